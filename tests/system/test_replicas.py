"""Two server replicas on one database and one data directory (docs/scaling.md).

32 jobs of ε = 0.1 against a grant of exactly 1.0, submitted half to each
replica at once: exactly 10 succeed between them, the ledger sums to the cap
and verifies, each replica serves the other's jobs to `GetJob`/`WatchJob`, and a
replica that restarts fails only the jobs it left unfinished.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from enclave import Client
from enclave._app import Enclave
from enclave._server import RunningServer, start_server
from jobs import JobState

SCRIPT = 'result["n"] = release(dataset().count(), epsilon=0.1).value'


@pytest.fixture
def replicas(
    database_url: str, tmp_path: Path, dataset_files
) -> Iterator[tuple[list[str], list[Enclave], str]]:
    data_dir = tmp_path / "shared"
    apps = [Enclave(data_dir, database_url, replica=name) for name in ("a", "b")]
    _admin, admin_token = apps[0].principals.create("root", "admin", created_by="test")
    servers: list[RunningServer] = [
        start_server(app, "127.0.0.1:0", insecure=True, max_jobs_per_researcher=32) for app in apps
    ]
    addresses = [f"127.0.0.1:{s.port}" for s in servers]
    data, schema = dataset_files
    with Client(addresses[1], admin_token) as admin:  # principals made on b serve on a
        provider = admin.create_principal("prov", "provider")
        researcher = admin.create_principal("bob", "researcher")
    with Client(addresses[0], provider) as c:  # the dataset registered through a ...
        c.register_dataset("stays", data, schema)
    with Client(addresses[1], provider) as c:  # ... is granted through b
        c.grant("stays", "bob", "1.0")
    yield addresses, apps, researcher
    for server, app in zip(servers, apps, strict=True):
        server.stop(grace=5)
        app.close()


def test_two_replicas_spend_one_budget_exactly(replicas) -> None:
    addresses, apps, token = replicas
    n = 32
    barrier = threading.Barrier(n)
    outcomes: list[tuple[str, str, str]] = [("", "", "")] * n

    def submit(i: int) -> None:
        with Client(addresses[i % 2], token) as client:
            barrier.wait()
            job = client.submit(SCRIPT, "stays", request_id=f"r{i}", wait=True)
            outcomes[i] = (job.job_id, job.state, job.error_code)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    states = [state for _id, state, _code in outcomes]
    assert states.count("SUCCEEDED") == 10
    assert {code for _i, _s, code in outcomes} - {""} == {"RESOURCE_EXHAUSTED"}
    entries = apps[0].ledger.entries()
    assert len(entries) == 10
    assert sum((e.epsilon for e in entries), Decimal(0)) == Decimal("1.0")
    apps[1].ledger.verify()
    # Either replica answers for a job the other ran.
    job_of_a = outcomes[0][0]
    with Client(addresses[1], token) as client:
        assert client.get_job(job_of_a).state == outcomes[0][1]
        assert [j.state for j in client.watch_job(job_of_a)] == [outcomes[0][1]]
        [budget] = client.budget()
    assert (budget.epsilon_spent, budget.epsilon_remaining) == (Decimal("1.0"), 0)


def test_a_restarting_replica_fails_only_its_own_unfinished_jobs(replicas) -> None:
    _addresses, apps, _token = replicas
    a, b = apps
    a.job_store.create("left-by-a", "bob", "x1", "stays", SCRIPT)
    b.job_store.create("left-by-b", "bob", "x2", "stays", SCRIPT)
    assert a.job_store.fail_unfinished("a restarted") == 1
    assert a.job_store.get("left-by-a").state == JobState.FAILED
    assert a.job_store.get("left-by-b").state == JobState.QUEUED


def test_a_cancel_through_the_other_replica_stops_the_charges(replicas) -> None:
    """The running replica checks the job before each debit: a cancel made
    elsewhere ends the job there at its next release, charging nothing more."""
    addresses, apps, token = replicas
    looping = (
        "i = 0\n"
        "while i < 200:\n"
        "    release(dataset().count(), epsilon=0.001)\n"
        "    x = 0\n"
        "    while x < 200000:\n"
        "        x = x + 1\n"
        "    i = i + 1\n"
    )
    with Client(addresses[0], token) as on_a, Client(addresses[1], token) as on_b:
        job = on_a.submit(looping, "stays", wait=False)
        deadline = time.monotonic() + 30
        while not on_a.get_job(job.job_id).releases:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        on_b.cancel_job(job.job_id)
        charged_then = len(apps[0].ledger.entries(job_id=job.job_id))
        final = [j for j in on_a.watch_job(job.job_id)][-1]
    assert final.state == "CANCELLED"
    time.sleep(1.0)  # a replica still running it would go on charging
    charged = len(apps[0].ledger.entries(job_id=job.job_id))
    assert charged <= charged_then + 1  # at most the release already past its check
    assert charged < 200
