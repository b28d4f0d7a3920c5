"""Moving credit by hand: a top-up is positive (`topup ACCT -- -1` used to debit silently);
a correction is an explicit adjustment with a note, either sign. The CLI, the admin API and the
Ledger apply one rule (``domain.money.check_credit``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from ideohub.config import Secrets
from ideohub.domain.errors import InvalidRequest
from ideohub.domain.money import check_credit, parse_usd
from ideohub.store import db
from ideohub.store.ledger import Ledger
from ideohub.store.models import LedgerEntry
from ideohub.store.repository import Repository

TOKEN = "admin-token-" + "m" * 32
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def cli(data_dir, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDEOHUB_")}
    env["IDEOHUB_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "ideohub.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def ledger_rows(url: str, account_id: str) -> list[tuple[str, int, str | None]]:
    engine = sa.create_engine(db.sync_url(url))
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(
                sa.select(LedgerEntry.kind, LedgerEntry.amount_micros, LedgerEntry.note)
                .where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind,micros,note,field", [
    ("topup", -1, None, "usd"), ("topup", 0, None, "usd"), ("topup", -5_000_000, "refund", "usd"),
    ("adjust", 0, "why", "usd"), ("adjust", -1, None, "note"), ("adjust", 5, "   ", "note"),
    ("adjust", 5, "bad\x00note", "note"), ("adjust", 5, "n" * 201, "note"),
])
def test_the_rule(kind, micros, note, field):
    with pytest.raises(InvalidRequest) as info:
        check_credit(kind, micros, note)
    assert info.value.field == field


def test_the_rule_accepts():
    assert check_credit("topup", 1, None).micros == 1
    c = check_credit("adjust", -2_500_000, " double entry ")
    assert (c.kind, c.micros, c.note) == ("adjust", -2_500_000, "double entry")
    assert parse_usd(" -2.5 ", "usd") == -2_500_000


def test_cli_topup_refuses_a_negative_amount_and_adjust_corrects_with_a_note(tmp_path):
    data = tmp_path / "data"
    created = cli(data, "accounts", "create", "acme")
    assert created.returncode == 0, created.stderr
    account = created.stdout.strip().splitlines()[-1]
    assert cli(data, "topup", account, "10").stdout.strip() == "10"

    for args in (["topup", account, "--", "-1"], ["topup", account, "0"], ["adjust", account, "--", "-1"],
                 ["adjust", account, "--note", "x", "0"]):
        out = cli(data, *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
    assert "positive" in cli(data, "topup", account, "--", "-1").stderr
    assert cli(data, "balance", account).stdout.strip() == "10"  # nothing moved

    out = cli(data, "adjust", account, "--note", "invoice 7 entered twice", "--", "-2.5")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "7.5"
    assert cli(data, "adjust", account, "--note", "goodwill", "0.25").stdout.strip() == "7.75"
    assert cli(data, "adjust", "acct_nope", "--note", "x", "1").returncode == 1

    url = f"sqlite:///{(data / 'ideohub.db').resolve()}"
    assert ledger_rows(url, account) == [("topup", 10_000_000, None), ("adjust", -2_500_000, "invoice 7 entered twice"),
                                         ("adjust", 250_000, "goodwill")]


def test_admin_api_topup_is_positive_and_adjust_needs_a_note(start_server):
    srv = start_server(admin_token=TOKEN)
    r = srv.client.post("/admin/accounts", headers=ADMIN, json={"name": "acme"})
    account = r.json()["id"]
    topup, adjust = f"/admin/accounts/{account}/topup", f"/admin/accounts/{account}/adjust"
    assert srv.client.post(topup, headers=ADMIN, json={"usd": "3"}).json()["balance_usd"] == "3"
    for path, body, field in [(topup, {"usd": "-1"}, "usd"), (topup, {"usd": "0"}, "usd"),
                              (topup, {"usd": "-0.000001", "note": "fix"}, "usd"),
                              (adjust, {"usd": "-1"}, "note"), (adjust, {"usd": "-1", "note": ""}, "note"),
                              (adjust, {"usd": "0", "note": "why"}, "usd"), (adjust, {"usd": "x", "note": "y"}, "usd")]:
        r = srv.client.post(path, headers=ADMIN, json=body)
        assert r.status_code == 400, (path, body, r.text)
        assert field in r.json()["detail"], (body, r.json())
    assert srv.client.get(f"/admin/accounts/{account}", headers=ADMIN).json()["balance_usd"] == "3"
    r = srv.client.post(adjust, headers=ADMIN, json={"usd": "-1.5", "note": "refund by hand"})
    assert r.status_code == 200 and r.json() == {"account_id": account, "balance_usd": "1.5"}
    assert srv.client.post("/admin/accounts/acct_nope/adjust", headers=ADMIN,
                           json={"usd": "1", "note": "x"}).status_code == 404
    assert ledger_rows(srv.settings.db_url, account)[-1] == ("adjust", -1_500_000, "refund by hand")


def test_the_ledger_applies_the_rule_and_adjustments_are_not_charges(start_server):
    srv = start_server()

    async def go() -> None:
        repo = Repository.connect(srv.settings.db_url, Secrets.load(srv.settings).key_pepper)
        try:
            ledger = Ledger(repo.session)
            acct = await ledger.create_account("x")
            with pytest.raises(InvalidRequest):
                await ledger.topup(acct.id, -1)
            with pytest.raises(InvalidRequest):
                await ledger.adjust(acct.id, -1, None)
            await ledger.topup(acct.id, 2_000_000)
            assert await ledger.adjust(acct.id, -500_000, "correction") == 1_500_000
            assert await ledger.charged(acct.id) == 0
            assert await ledger.ledger_sum(acct.id) == 1_500_000
        finally:
            await repo.close()

    asyncio.run(go())
