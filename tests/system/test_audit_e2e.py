"""The DPO verifies the ledger's hash chain over gRPC and the CLI, and anchors its head.

Tampering is done with raw SQL on the server's own database, as an attacker with
database access would: an edited amount is named by its entry; a tail removed
together with a consistently rewritten head row verifies on its own, and is
caught only against a head recorded earlier.
"""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest
from sqlalchemy import text

from enclave import Client


def _spend(server, name: str, releases: int) -> str:
    token = server.researcher("5", name=name)
    script = "\n".join(
        f'result["r{i}"] = release(dataset().count(), epsilon=0.1)' for i in range(releases)
    )
    with Client(server.address, token) as client:
        assert client.run(script, "stays").state == "SUCCEEDED"
    return token


def _cli(server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env |= {"ENCLAVE_TOKEN": server.dpo_token, "ENCLAVE_ADDRESS": server.address}
    return subprocess.run(
        [sys.executable, "-m", "enclave", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_dpo_verifies_the_chain_and_the_cli_says_so(server) -> None:
    token = _spend(server, "audited_alice", 3)
    with Client(server.address, server.dpo_token) as dpo:
        found = dpo.verify_ledger()
        head = dpo.ledger_head()
    assert found.ok
    assert found.entries == head.seq >= 3
    assert found.head_hash == head.hash
    done = _cli(server, "audit", "verify", "--head", head.hash)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{head.seq} entries, head {head.hash}" in done.stdout
    assert head.hash in _cli(server, "audit", "head").stdout
    with (
        Client(server.address, token) as researcher,
        pytest.raises(grpc.RpcError, match="PERMISSION_DENIED"),
    ):
        researcher.verify_ledger()


def test_tampering_is_named_and_a_removed_tail_is_caught_against_a_recorded_head(
    server,
) -> None:
    _spend(server, "tampered_bob", 2)
    engine = server.app.engine
    with Client(server.address, server.dpo_token) as dpo:
        recorded = dpo.ledger_head()
        assert dpo.verify_ledger(recorded.hash).ok
        last = recorded.seq
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE ledger_entries SET epsilon_q = epsilon_q + 1 WHERE seq = :s"),
                {"s": last - 1},
            )
        broken = dpo.verify_ledger()
        assert (broken.ok, broken.bad_entry) == (False, last - 1)
        assert "does not match its hash" in broken.problem
        done = _cli(server, "audit", "verify")
        assert done.returncode == 1
        assert f"BROKEN at entry {last - 1}" in done.stdout
        with engine.begin() as conn:  # undo, then cut the tail and fix up the head row
            conn.execute(
                text("UPDATE ledger_entries SET epsilon_q = epsilon_q - 1 WHERE seq = :s"),
                {"s": last - 1},
            )
            previous = conn.execute(
                text("SELECT hash FROM ledger_entries WHERE seq = :s"), {"s": last - 1}
            ).scalar_one()
            conn.execute(text("DELETE FROM ledger_entries WHERE seq = :s"), {"s": last})
            conn.execute(
                text("UPDATE ledger_head SET seq = :s, hash = :h"), {"s": last - 1, "h": previous}
            )
        assert dpo.verify_ledger().ok  # consistent on its own...
        cut = dpo.verify_ledger(recorded.hash)  # ...but not with the anchored head
        assert not cut.ok
        assert "not in the chain" in cut.problem


def test_only_the_dpo_may_audit(server) -> None:
    for token in (server.provider_token, server.admin_token):
        with (
            Client(server.address, token) as other,
            pytest.raises(grpc.RpcError, match="PERMISSION_DENIED"),
        ):
            other.ledger_head()
