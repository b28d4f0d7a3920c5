"""Full-size attacks on ``ideohub serve`` with default settings (issue 7, items 1, 2 and 4).

One run of each attack the issue reproduced, at its full size, against a server in its own
process (temporary data directory, SQLite, default limits; ``admin_token`` set so the admin API
exists and answers 401): the admin body without a token (600 MB chunked JSON), 1 GB of chunked
JSON to an image endpoint, a 2 GB file part, a 390 MB urlencoded body, 800 MB of unused file parts,
and 1,000 connections trickling a header byte every 15 s — from one loopback address, then from
ten (100 each: the default per-client cap, together the default connection cap) — while a normal
client on another address keeps asking for ``/healthz``.

Printed per attack: the bytes the client managed to send (chunk framing included) before the
server answered and closed, the answer, the server's RSS before / highest sample during / after
(``/proc/<pid>/status`` VmRSS sampled every 50 ms) and VmHWM (the kernel's peak), and the time.
The body attacks and the test-suite versions (tests/test_attacks.py, small caps) share their code.

Run:  .venv/bin/python bench/attacks.py            (about 2 minutes; 2 shared cores: run it rarely)
      .venv/bin/python bench/attacks.py --only "chunked JSON"
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_attacks import ATTACKS, MB, Memory, run_attack  # noqa: E402
from test_connections import ServerProcess, connect, read_until_closed, readable, status  # noqa: E402

GB = 1024 * MB
FULL_SIZE = {
    "admin JSON, no token": 600 * MB,
    "chunked JSON": 1 * GB,
    "one huge file part": 2 * GB,
    "huge urlencoded": 390 * MB,
    "many unused file parts": 800 * MB,
}
SLOW_CONNECTIONS = 1000
SLOW_ADDRESSES = 10
SLOW_INTERVAL_S = 15.0
SLOW_OBSERVE_S = 45.0  # past the default 30 s header deadline


def slow_headers(server: ServerProcess, addresses: int) -> tuple[str, str, str]:
    """1,000 trickling connections from ``addresses`` source addresses, while a normal client
    (another address) asks for /healthz about twice a second. Returns (what was sent, what the
    server did to the attackers, what the normal client got)."""
    socks = [connect(server.port, f"127.0.1.{1 + i % addresses}") for i in range(SLOW_CONNECTIONS)]
    for s in socks:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
        except OSError:
            pass
    open_ = set(range(len(socks)))
    answers: Counter[str] = Counter()
    normal: Counter[str] = Counter()
    first_ok: float | None = None
    started = last_byte = time.monotonic()
    while time.monotonic() - started < SLOW_OBSERVE_S:
        for s in readable([socks[i] for i in open_], 0.5):
            i = socks.index(s)
            answers[str(status(read_until_closed(s, 2)[0]))] += 1
            open_.discard(i)
        if time.monotonic() - last_byte >= SLOW_INTERVAL_S:
            last_byte = time.monotonic()
            for i in list(open_):
                try:
                    socks[i].sendall(b"X")
                except OSError:
                    open_.discard(i)
                    answers["reset"] += 1
        probe = connect(server.port, "127.0.2.1")
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        code = status(read_until_closed(probe, 10)[0])
        probe.close()
        normal[str(code)] += 1
        if code == 200 and first_ok is None:
            first_ok = time.monotonic() - started
    for s in socks:
        s.close()
    attackers = ", ".join(f"{n} × {code}" for code, n in sorted(answers.items()))
    seen = ", ".join(f"{n} × {code}" for code, n in sorted(normal.items()))
    return (f"{SLOW_CONNECTIONS} conns from {addresses} address{'es' if addresses > 1 else ''}, "
            f"1 B/{SLOW_INTERVAL_S:g} s",
            f"{SLOW_CONNECTIONS - len(open_)} closed within {SLOW_OBSERVE_S:g} s ({attackers})",
            f"normal client: {seen}; first 200 at {first_ok:.1f} s" if first_ok is not None else f"normal: {seen}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="run one attack by name")
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as tmp, \
            ServerProcess(Path(tmp), {"IDEOHUB_ADMIN_TOKEN": "bench-admin-token"}) as server:
        for attack in ATTACKS:
            total = FULL_SIZE.get(attack.name)
            if total is None or (args.only and args.only != attack.name):
                continue
            outcome, memory = run_attack(server, attack, total, budget_s=600)
            rows.append((f"{attack.name} ({total // MB:,} MB)", f"{outcome.sent / MB:,.1f} MB",
                         f"{outcome.status}{', closed' if outcome.closed else ''}",
                         f"{memory.before // 1024} / {memory.peak // 1024} / {memory.after // 1024}",
                         f"{memory.hwm_before // 1024} → {memory.hwm_after // 1024}", f"{outcome.seconds:.2f}"))
            print(" | ".join(rows[-1]), flush=True)
        for addresses in (1, SLOW_ADDRESSES):
            if args.only and args.only != "slow headers":
                continue
            server.wait_until_serving()
            started = time.monotonic()
            with Memory(server) as memory:
                sent, answer, normal = slow_headers(server, addresses)
            rows.append((f"slow headers ({normal})", sent, answer,
                         f"{memory.before // 1024} / {memory.peak // 1024} / {memory.after // 1024}",
                         f"{memory.hwm_before // 1024} → {memory.hwm_after // 1024}",
                         f"{time.monotonic() - started:.1f}"))
            print(" | ".join(rows[-1]), flush=True)
    print()
    print("| attack | client sent | server answer | RSS MB before / peak / after | VmHWM MB | seconds |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
