"""The DPO's audit over a real server and the CLI: budgets by researcher x dataset with
lifetime and refresh, the ledger filtered, paginated and exported, a job's full
record, the HTML report; and what the researcher and the provider see of it.

Refresh periods rolling over are tested with an injectable clock in
tests/unit/test_ledger.py; here the server runs on the real clock.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal

import grpc
import pytest

from enclave import Client

POLICY = 'refresh = "daily"\nlifetime_cap_epsilon = 3\ndataset_cap_epsilon = 20\n'
SCRIPT = 'result["n"] = release(dataset().count(), epsilon={eps})'


def _cli(server, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env |= {"ENCLAVE_TOKEN": token, "ENCLAVE_ADDRESS": server.address}
    done = subprocess.run(
        [sys.executable, "-m", "enclave", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def audited(server, tmp_path_factory) -> dict[str, object]:
    """Two researchers who spent on "stays" under a daily policy; their jobs."""
    policy = tmp_path_factory.mktemp("policy") / "policy.toml"
    policy.write_text(POLICY)
    _cli(server, server.provider_token, "policy", "set", "stays", "--file", str(policy))
    alice = server.researcher("1", name="audit_alice")
    bob = server.researcher("2", name="audit_bob")
    jobs = {}
    with Client(server.address, alice) as client:
        jobs["alice"] = [client.run(SCRIPT.format(eps=0.25), "stays") for _ in range(3)]
    with Client(server.address, bob) as client:
        jobs["bob"] = [client.run(SCRIPT.format(eps=0.5), "stays")]
    return {"alice": alice, "bob": bob, "jobs": jobs}


def test_the_researcher_sees_the_period_lifetime_and_next_refresh(server, audited) -> None:
    with Client(server.address, audited["alice"]) as client:
        (budget,) = client.budget("stays")
        refused = client.submit(SCRIPT.format(eps=0.5), "stays")
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    assert budget.refresh == "daily"
    assert budget.next_refresh == dt.datetime.combine(tomorrow, dt.time(), dt.UTC)
    assert (budget.epsilon_spent, budget.epsilon_remaining) == (Decimal("0.75"), Decimal("0.25"))
    assert (budget.lifetime_epsilon_spent, budget.lifetime_epsilon_cap) == (Decimal("0.75"), 3)
    assert refused.state == "FAILED" and refused.error_code == "RESOURCE_EXHAUSTED"
    assert f"starts again at {tomorrow.isoformat()}T00:00:00+00:00" in refused.error_message

    shown = _cli(server, audited["alice"], "budget").stdout
    assert "0.75 of 3" in shown
    assert f"daily, next {tomorrow.isoformat()} 00:00 UTC" in shown
    as_json = json.loads(_cli(server, audited["alice"], "budget", "--json").stdout)
    assert as_json[0]["lifetime_epsilon_cap"] == "3"
    assert as_json[0]["refresh"] == "daily"


def test_the_dpo_lists_every_budget_and_others_cannot(server, audited) -> None:
    with Client(server.address, server.dpo_token) as dpo:
        everyone = {b.principal: b for b in dpo.budgets(dataset="stays")}
        only_bob = dpo.budgets(principal="audit_bob")
    assert everyone["audit_alice"].lifetime_epsilon_spent == Decimal("0.75")
    assert everyone["audit_bob"].epsilon_spent == Decimal("0.5")
    assert everyone["audit_bob"].epsilon_cap == 2
    assert [b.principal for b in only_bob] == ["audit_bob"]
    table = _cli(server, server.dpo_token, "audit", "budgets", "--dataset", "stays").stdout
    assert "audit_alice" in table and "audit_bob" in table and "0.75 of 3" in table

    # The provider sees its own dataset's budgets; a researcher never sees others'.
    with Client(server.address, server.provider_token) as provider:
        assert {b.principal for b in provider.budgets(dataset="stays")} >= {"audit_alice"}
        assert {b.dataset for b in provider.budgets()} == {"stays"}  # its only dataset
    with Client(server.address, server.admin_token) as admin:
        other = admin.create_principal("audit_other_provider", "provider")
    with Client(server.address, other) as provider:
        assert provider.budgets() == []
        with pytest.raises(grpc.RpcError, match="not one you registered"):
            provider.budgets(dataset="stays")
    with Client(server.address, audited["alice"]) as researcher:
        assert [b.dataset for b in researcher.budget()] == ["stays"]
        for call in (researcher.budgets, lambda: list(researcher.ledger())):
            with pytest.raises(grpc.RpcError, match="PERMISSION_DENIED"):
                call()


def test_the_ledger_is_filtered_paginated_and_exported(server, audited, tmp_path) -> None:
    with Client(server.address, server.dpo_token) as dpo:
        everything = list(dpo.ledger())
        alice = list(dpo.ledger(principal="audit_alice", page_size=2))  # 2 pages
        later = list(dpo.ledger(since=everything[-1].created_at))
        none_yet = list(dpo.ledger(until=everything[0].created_at))
        verified = dpo.verify_ledger()
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    assert everything[-1].hash == verified.head_hash
    assert [e.cost.epsilon for e in alice] == [Decimal("0.25")] * 3
    assert {e.job_id for e in alice} == {j.job_id for j in audited["jobs"]["alice"]}
    assert later[-1].seq == everything[-1].seq and none_yet == []

    out = tmp_path / "ledger.csv"
    done = _cli(server, server.dpo_token, "audit", "ledger", "--format", "csv", "--out", str(out))
    assert f"wrote {len(everything)} ledger entries" in done.stdout
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["seq"]) for r in rows] == [e.seq for e in everything]
    assert rows[-1]["hash"] == verified.head_hash
    as_json = json.loads(
        _cli(
            server,
            server.dpo_token,
            "audit",
            "ledger",
            "--researcher",
            "audit_bob",
            "--format",
            "json",
        ).stdout
    )
    assert [(r["principal"], r["epsilon"]) for r in as_json] == [("audit_bob", "0.5")]
    table = _cli(server, server.dpo_token, "audit", "ledger", "--dataset", "stays").stdout
    assert "audit_alice" in table and "epsilon=0.25" in table


def test_the_dpo_reads_a_jobs_full_record(server, audited) -> None:
    job = audited["jobs"]["alice"][0]
    shown = _cli(server, server.dpo_token, "audit", "job", job.job_id).stdout
    assert "by audit_alice" in shown
    assert "release(dataset().count(), epsilon=0.25)" in shown
    assert "mechanism:" in shown and "plan: " in shown and "created " in shown
    record = json.loads(_cli(server, server.dpo_token, "audit", "job", job.job_id, "--json").stdout)
    assert record["principal"] == "audit_alice"
    assert record["releases"][0]["plan"] is not None
    assert record["releases"][0]["epsilon"] == "0.25"
    assert record["created_at"] <= record["finished_at"]


def test_the_report_has_charts_and_the_top_consumers(server, audited, tmp_path) -> None:
    done = _cli(server, server.dpo_token, "audit", "report", "--out", str(tmp_path / "r"))
    page = (tmp_path / "r" / "index.html").read_text()
    assert "wrote" in done.stdout
    assert page.count('src="data:image/png;base64,') >= 3  # the dataset and two researchers
    assert "Largest consumers" in page and "hash chain verified" in page
    # bob spent 0.5 and alice 0.75 on stays: alice comes first in the table.
    assert page.index("<td>audit_alice</td>") < page.index("<td>audit_bob</td>")
    assert (tmp_path / "r" / "ledger.csv").read_text().startswith("seq,created_at")


def test_policy_history_shows_old_and_new_with_the_author(server, audited, tmp_path) -> None:
    changed = tmp_path / "policy.toml"
    changed.write_text(POLICY.replace("lifetime_cap_epsilon = 3", "lifetime_cap_epsilon = 4"))
    _cli(server, server.provider_token, "policy", "set", "stays", "--file", str(changed))
    shown = _cli(server, server.dpo_token, "policy", "show", "stays", "--history").stdout
    assert "set by provider" in shown
    assert "changed: lifetime_cap_epsilon: 3 → 4" in shown
