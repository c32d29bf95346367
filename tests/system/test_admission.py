"""Caps on jobs queued or running, per researcher and in total: excess submissions
get RESOURCE_EXHAUSTED with a retry hint, nothing is queued or charged, and a
replay of an accepted job is still answered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from enclave import Client
from enclave._app import Enclave
from enclave._server import start_server
from jobs import Limits

# Long enough to keep the only job slot busy while the test submits the others.
SLOW = "x = 0\nwhile x >= 0:\n    x = x + 1\n"  # runs until cancelled
QUICK = 'result["n"] = release(dataset().count(), epsilon=0.1)'


@pytest.fixture
def capped(tmp_path: Path, dataset_files) -> Iterator[tuple[str, str, str]]:
    app = Enclave(tmp_path)
    _admin, admin_token = app.principals.create("root", "admin", created_by="test")
    running = start_server(
        app,
        "127.0.0.1:0",
        insecure=True,
        limits=Limits(cpu_seconds=60, memory_mb=256, wall_seconds=60),
        max_concurrent_jobs=1,
        max_jobs_per_researcher=2,
        max_queued_jobs=3,
    )
    address = f"127.0.0.1:{running.port}"
    data, schema = dataset_files
    with Client(address, admin_token) as admin:
        provider = admin.create_principal("prov", "provider")
        tokens = [admin.create_principal(name, "researcher") for name in ("alice", "bob")]
    with Client(address, provider) as client:
        client.register_dataset("stays", data, schema)
        for name in ("alice", "bob"):
            client.grant("stays", name, 5)
    yield address, tokens[0], tokens[1]
    running.stop(grace=1)


def _refused(client: Client, script: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        client.submit(script, "stays", wait=False)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(err.value.trailing_metadata())["grpc-retry-pushback-ms"] == "2000"
    return err.value


def test_excess_jobs_are_refused_with_a_retry_hint(capped) -> None:
    address, alice_token, bob_token = capped
    with Client(address, alice_token) as alice, Client(address, bob_token) as bob:
        running = alice.submit(SLOW, "stays", wait=False)
        queued = alice.submit(QUICK, "stays", request_id="second", wait=False)
        mine = _refused(alice, QUICK)
        assert "you already have 2 jobs queued or running" in mine.details()
        assert "nothing was queued or charged" in mine.details()
        # A replay of an accepted job is not a new job: it is answered.
        assert alice.submit(QUICK, "stays", request_id="second", wait=False).job_id == (
            queued.job_id
        )
        bob.submit(QUICK, "stays", wait=False)
        everyone = _refused(bob, QUICK)
        assert "the server has 3 jobs queued or running" in everyone.details()
        assert len(alice.list_jobs()) == 2 and len(bob.list_jobs()) == 1  # refusals: no job
        assert alice.budget("stays")[0].epsilon_spent == 0

        alice.cancel_job(running.job_id)
        deadline = time.monotonic() + 60
        while True:  # the freed slot is taken again
            try:
                again = alice.submit(QUICK, "stays", wait=True)
                break
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert again.state == "SUCCEEDED"
