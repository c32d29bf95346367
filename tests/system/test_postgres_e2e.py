"""The whole server on PostgreSQL: same code, a SQLAlchemy URL away.

64 concurrent jobs, each releasing epsilon = 0.1 against a grant of exactly 2.5,
from 64 client threads: exactly 25 succeed, the others fail RESOURCE_EXHAUSTED,
and the ledger sums to the cap and verifies. The same runs on SQLite, so both
backends are held to one contract.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from enclave import Client

SCRIPT = 'result["n"] = release(dataset().count(), epsilon=0.1)'


@pytest.fixture
def served(database_url: str, tmp_path: Path, dataset_files) -> Iterator[tuple[str, object, str]]:
    from enclave._app import Enclave
    from enclave._server import start_server

    app = Enclave(tmp_path / "data", database_url=database_url)
    _admin, admin_token = app.principals.create("root", "admin", created_by="test")
    # One researcher submits 64 jobs at once: allow them all to queue.
    running = start_server(
        app, "127.0.0.1:0", insecure=True, max_concurrent_jobs=4, max_jobs_per_researcher=64
    )
    address = f"127.0.0.1:{running.port}"
    data, schema = dataset_files
    with Client(address, admin_token) as admin:
        provider = admin.create_principal("prov", "provider")
        admin.create_principal("alice", "researcher")
        researcher = admin.create_principal("bob", "researcher")
    with Client(address, provider) as c:
        c.register_dataset("stays", data, schema)
        c.grant("stays", "bob", "2.5")
    yield address, app, researcher
    running.stop(grace=5)
    app.close()


def test_concurrent_jobs_never_overspend(served) -> None:
    address, app, token = served
    n = 64
    barrier = threading.Barrier(n)
    states: list[str] = [""] * n
    errors: list[str] = [""] * n

    def submit(i: int) -> None:
        with Client(address, token) as client:
            barrier.wait()
            job = client.submit(SCRIPT, "stays", request_id=f"r{i}", wait=True)
            states[i], errors[i] = job.state, job.error_code

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert states.count("SUCCEEDED") == 25
    assert sorted(set(errors) - {""}) == ["RESOURCE_EXHAUSTED"]
    entries = app.ledger.entries()  # type: ignore[attr-defined]
    assert len(entries) == 25
    assert sum((e.epsilon for e in entries), Decimal(0)) == Decimal("2.5")
    app.ledger.verify()  # type: ignore[attr-defined]
    with Client(address, token) as client:
        [budget] = client.budget()
    assert (budget.epsilon_spent, budget.epsilon_remaining) == (Decimal("2.5"), 0)
