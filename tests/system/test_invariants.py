"""Charge before release, and no confidential text in errors, on a real server."""

from __future__ import annotations

from decimal import Decimal

from enclave import Client, JobFailed
from jobs import JobState


def test_evaluation_failure_keeps_the_charge_and_hides_the_cause(server, dataset_files) -> None:
    data, schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("fragile", data, schema)
    token = server.researcher(None, name="fragile_user")
    with Client(server.address, server.provider_token) as provider:
        provider.grant("fragile", "fragile_user", 1)
    # The stored file is damaged after registration; its bytes hold a "secret".
    entry = server.app.catalog.get("fragile")
    entry.path.write_bytes(b"PAR1 secret-value-4242 not really parquet")
    with Client(server.address, token) as client:
        try:
            client.run('result["n"] = release(dataset("fragile").count(), epsilon=0.3)', "fragile")
        except JobFailed as err:
            failure = err
        else:
            raise AssertionError("the release should have failed")
        [budget] = client.budget()
    assert failure.code.name == "INTERNAL"
    assert "secret" not in failure.message
    assert "charged" in failure.message
    # Invariant 2: the debit was committed before the measurement ran, and stays.
    assert budget.epsilon_spent == Decimal("0.3")
    [entry] = server.app.ledger.entries(job_id=failure.job.job_id)
    assert entry.epsilon == Decimal("0.3")
    assert failure.job.releases[0].value is None


def test_jobs_left_running_by_a_dead_server_are_failed_at_start(tmp_path) -> None:
    from enclave._app import Enclave

    app = Enclave(tmp_path)
    app.job_store.create("j1", "alice", "r1", "stays", "result['x'] = 1")
    app.job_store.mark_running("j1")
    assert app.job_store.get("j1").state == JobState.RUNNING
    app.start_jobs()
    stale = app.job_store.get("j1")
    assert stale.state == JobState.FAILED
    assert stale.error_code == "ABORTED"
    app.jobs.shutdown(1)
    app.close()


def test_a_replica_fails_only_its_own_unfinished_jobs_at_start(tmp_path, database_url) -> None:
    """Replicas share one database: starting one must not fail another's live jobs."""
    from enclave._app import Enclave

    a = Enclave(tmp_path / "a", database_url, replica="a")
    a.job_store.create("ja", "alice", "r1", "stays", "result['x'] = 1")
    a.job_store.mark_running("ja")
    b = Enclave(tmp_path / "b", database_url, replica="b")
    b.job_store.create("jb", "bob", "r1", "stays", "result['x'] = 1")
    b.start_jobs()  # replica b starts: a's running job is a's
    assert b.job_store.get("ja").state == JobState.RUNNING
    assert b.job_store.get("jb").state == JobState.FAILED
    a.start_jobs()  # a restarts: its own job can never finish
    assert a.job_store.get("ja").state == JobState.FAILED
    for app in (a, b):
        app.jobs.shutdown(1)
        app.close()
