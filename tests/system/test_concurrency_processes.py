"""Races from separate client processes: no interleaving overspends, on SQLite and PostgreSQL.

Every client here is its own OS process (`sys.executable -c CLIENT`), with its own
gRPC channel. Each connects and checks its budget first, says "ready", then
blocks reading one shared pipe; the test closes the pipe's write end once all are
ready, which releases every process at the same instant, so the submissions
really race.

* A researcher's own cap: 64 processes each release ``count()`` at epsilon = 0.1
  against a grant of exactly 2.3. Exactly 23 succeed, the 41 others fail
  RESOURCE_EXHAUSTED saying the budget is exhausted and nothing was charged; the
  ledger holds exactly the 23 debits of the jobs that succeeded, sums to the cap,
  and verifies (over gRPC and with ``enclave audit verify``).
* The dataset-wide cap over several researchers: four researchers with generous
  grants, a policy capping all of them together at 1.7, 64 submissions from
  8 processes of 8 threads each, sent to two server replicas on one database.
  Exactly 17 succeed across the researchers, their spending sums to the cap,
  and every refusal names the dataset-wide cap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from enclave import Client

pytestmark = pytest.mark.slow

EPSILON = Decimal("0.1")
SCRIPT = f'result["n"] = release(dataset().count(), epsilon={EPSILON})'
ATTEMPTS = 64

# One client process: connect, prove the token works, say "ready", wait for the
# start pipe to close, then submit from N_THREADS threads (each with its own
# channel, released together by a barrier) and print one JSON line of outcomes.
CLIENT = r"""
import json, os, sys, threading
from enclave import Client

spec = json.loads(sys.argv[1])
clients = [Client(spec["address"], spec["token"], timeout=120) for _ in spec["request_ids"]]
for c in clients:
    [b] = c.budget(spec["dataset"])
outcomes = [None] * len(clients)
barrier = threading.Barrier(len(clients))

def submit(i):
    barrier.wait()
    try:
        job = clients[i].submit(spec["script"], spec["dataset"], request_id=spec["request_ids"][i])
        outcomes[i] = {
            "request_id": job.request_id, "job_id": job.job_id, "state": job.state,
            "code": job.error_code, "message": job.error_message, "cost": str(job.cost_epsilon),
        }
    except Exception as err:
        outcomes[i] = {"request_id": spec["request_ids"][i], "state": "CLIENT_ERROR",
                       "code": type(err).__name__, "message": str(err)}

threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(clients))]
print("ready", flush=True)
os.read(int(spec["start_fd"]), 1)  # blocks until the test closes the pipe's write end
for t in threads:
    t.start()
for t in threads:
    t.join()
for c in clients:
    c.close()
print(json.dumps(outcomes), flush=True)
"""


@dataclass(frozen=True)
class Outcome:
    """One submission as its client process saw it."""

    request_id: str
    job_id: str
    state: str
    code: str
    message: str
    cost: Decimal


def _race(
    groups: list[tuple[str, str, list[str]]], dataset: str, *, timeout: float = 240
) -> list[Outcome]:
    """Run one client process per ``(address, token, request_ids)``, all released together.

    Each process submits one job per request id, from as many threads.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    start_r, start_w = os.pipe()
    procs: list[subprocess.Popen[str]] = []
    try:
        for address, token, request_ids in groups:
            spec = {
                "address": address,
                "token": token,
                "dataset": dataset,
                "script": SCRIPT,
                "request_ids": request_ids,
                "start_fd": start_r,
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", CLIENT, json.dumps(spec)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                    pass_fds=(start_r,),
                )
            )
        for proc in procs:  # the barrier: every process connected and authenticated
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            if line != "ready\n":
                proc.wait(timeout=30)
                pytest.fail(f"a client process did not get ready: {line!r}\n{proc.stderr.read()}")
        os.close(start_w)  # releases them all at once
        start_w = -1
        outcomes: list[Outcome] = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            for o in json.loads(out):
                outcomes.append(
                    Outcome(
                        o["request_id"],
                        o.get("job_id", ""),
                        o["state"],
                        o["code"],
                        o["message"],
                        Decimal(o.get("cost", "0")),
                    )
                )
        return outcomes
    finally:
        os.close(start_r)
        if start_w != -1:
            os.close(start_w)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _audit_verifies(address: str, dpo_token: str, expected_entries: int) -> None:
    """The DPO's verification over gRPC and with the CLI, against the recorded head."""
    with Client(address, dpo_token) as dpo:
        found = dpo.verify_ledger()
        head = dpo.ledger_head()
    assert found.ok, found.problem
    assert found.entries == head.seq == expected_entries
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env |= {"ENCLAVE_TOKEN": dpo_token, "ENCLAVE_ADDRESS": address}
    done = subprocess.run(
        [sys.executable, "-m", "enclave", "audit", "verify", "--head", head.hash],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{expected_entries} entries, head {head.hash}" in done.stdout


@dataclass
class Replicas:
    """Servers sharing one database, and tokens for each role."""

    addresses: list[str]
    apps: list[Any]
    admin: str
    provider: str
    dpo: str

    def researcher(self, name: str, epsilon: str) -> str:
        with Client(self.addresses[0], self.admin) as admin:
            token = admin.create_principal(name, "researcher")
        with Client(self.addresses[0], self.provider) as provider:
            provider.grant("stays", name, epsilon)
        return token


def _replicas(
    database_url: str, data_dir: Path, dataset_files: tuple[Path, Path], n: int
) -> Iterator[Replicas]:
    """Start ``n`` servers on one database and data directory; register "stays"."""
    from enclave._app import Enclave
    from enclave._server import start_server

    apps = [Enclave(data_dir, database_url=database_url) for _ in range(n)]
    _root, admin = apps[0].principals.create("root", "admin", created_by="test")
    running = []
    try:
        for app in apps:
            # One researcher races all 64 submissions: allow them all to queue.
            running.append(
                start_server(
                    app,
                    "127.0.0.1:0",
                    insecure=True,
                    max_concurrent_jobs=16,
                    max_jobs_per_researcher=64,
                )
            )
        addresses = [f"127.0.0.1:{r.port}" for r in running]
        with Client(addresses[0], admin) as c:
            provider = c.create_principal("prov", "provider")
            dpo = c.create_principal("dpo", "dpo")
        data, schema = dataset_files
        with Client(addresses[-1], provider) as c:
            c.register_dataset("stays", data, schema)
        yield Replicas(addresses, apps, admin, provider, dpo)
    finally:
        for r in running:
            r.stop(grace=5)
        for app in apps:
            app.close()


@pytest.fixture
def one_server(
    database_url: str, tmp_path: Path, dataset_files: tuple[Path, Path]
) -> Iterator[Replicas]:
    yield from _replicas(database_url, tmp_path / "data", dataset_files, 1)


@pytest.fixture
def two_replicas(
    database_url: str, tmp_path: Path, dataset_files: tuple[Path, Path]
) -> Iterator[Replicas]:
    yield from _replicas(database_url, tmp_path / "data", dataset_files, 2)


def test_64_client_processes_spend_exactly_the_grant(one_server: Replicas) -> None:
    cap, allowed = Decimal("2.3"), 23
    token = one_server.researcher("bob", str(cap))
    [address] = one_server.addresses
    outcomes = _race([(address, token, [f"p{i}"]) for i in range(ATTEMPTS)], "stays")

    assert sorted(o.request_id for o in outcomes) == sorted(f"p{i}" for i in range(ATTEMPTS))
    won = [o for o in outcomes if o.state == "SUCCEEDED"]
    lost = [o for o in outcomes if o.state != "SUCCEEDED"]
    assert len(won) == allowed, {o.state + " " + o.code + " " + o.message for o in lost}
    assert all(o.cost == EPSILON for o in won)
    assert {(o.state, o.code) for o in lost} == {("FAILED", "RESOURCE_EXHAUSTED")}
    for o in lost:
        assert "privacy budget exhausted on dataset 'stays'" in o.message
        assert "nothing was charged" in o.message
        assert "dataset-wide" not in o.message
        assert o.cost == 0

    app = one_server.apps[0]
    debits = [e for e in app.ledger.entries() if e.dataset == "stays"]
    assert [e.kind for e in debits] == ["debit"] * allowed
    assert {e.principal for e in debits} == {"bob"}
    assert sorted(e.job_id for e in debits) == sorted(o.job_id for o in won)  # one each
    assert sum((e.epsilon for e in debits), Decimal(0)) == cap
    with Client(address, token) as client:
        [budget] = client.budget("stays")
        assert (budget.epsilon_spent, budget.epsilon_remaining) == (cap, Decimal(0))
        # Each request id ran as exactly one job, whatever the interleaving.
        assert len(client.list_jobs()) == ATTEMPTS
    _audit_verifies(address, one_server.dpo, allowed)


def test_the_dataset_wide_cap_holds_across_researchers_processes_and_replicas(
    two_replicas: Replicas,
) -> None:
    dataset_cap, allowed = Decimal("1.7"), 17
    names = [f"researcher{i}" for i in range(4)]
    # Each could afford all of its 16 attempts (1.6) on its own grant.
    tokens = {name: two_replicas.researcher(name, "5") for name in names}
    with Client(two_replicas.addresses[0], two_replicas.provider) as provider:
        provider.set_policy("stays", f"dataset_cap_epsilon = {dataset_cap}\n")

    processes, threads = 8, 8
    groups = []
    for p in range(processes):
        name = names[p % len(names)]
        address = two_replicas.addresses[p % len(two_replicas.addresses)]
        groups.append((address, tokens[name], [f"{name}-p{p}-t{t}" for t in range(threads)]))
    outcomes = _race(groups, "stays")

    assert len(outcomes) == processes * threads == ATTEMPTS
    won = [o for o in outcomes if o.state == "SUCCEEDED"]
    lost = [o for o in outcomes if o.state != "SUCCEEDED"]
    assert len(won) == allowed, {o.state + " " + o.code + " " + o.message for o in lost}
    assert {(o.state, o.code) for o in lost} == {("FAILED", "RESOURCE_EXHAUSTED")}
    for o in lost:
        assert "privacy budget exhausted on dataset 'stays'" in o.message
        assert "dataset-wide cap, all researchers together" in o.message
        assert o.cost == 0

    # Each researcher was charged exactly for their own successes; together, the cap.
    spent = {}
    for name in names:
        with Client(two_replicas.addresses[1], tokens[name]) as client:
            [budget] = client.budget("stays")
        successes = sum(o.request_id.startswith(f"{name}-") for o in won)
        assert budget.epsilon_spent == EPSILON * successes
        spent[name] = budget.epsilon_spent
    assert sum(spent.values(), Decimal(0)) == dataset_cap
    debits = [e for e in two_replicas.apps[0].ledger.entries() if e.dataset == "stays"]
    assert len(debits) == allowed
    assert sorted(e.job_id for e in debits) == sorted(o.job_id for o in won)
    assert sum((e.epsilon for e in debits), Decimal(0)) == dataset_cap
    for address in two_replicas.addresses:  # both replicas see the same dataset-wide total
        with Client(address, two_replicas.provider) as provider:
            assert Decimal(provider.policy("stays").dataset_spent.epsilon) == dataset_cap
        _audit_verifies(address, two_replicas.dpo, allowed)
