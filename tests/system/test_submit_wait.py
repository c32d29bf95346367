"""SubmitJob(wait=true): one call for a job, the deadline respected, cancels seen.

`Client.run` and `Client.submit(wait=True)` use it; a job longer than the call's
deadline comes back unfinished a second before the deadline and the client
follows it with WatchJob.
"""

from __future__ import annotations

import threading
import time

import pytest

from enclave import Client
from enclave.v1 import enclave_pb2 as pb
from jobs import Limits

QUICK = 'result["n"] = release(dataset().count(), epsilon=0.1).value'
# About three seconds of CPU, then a result.
SLOW = "x = 0\nwhile x < 60000000:\n    x = x + 1\nresult['x'] = x\n"
FOREVER = "x = 0\nwhile x >= 0:\n    x = x + 1\n"


@pytest.fixture
def one_slot(own_server) -> tuple[str, str]:
    limits = Limits(cpu_seconds=60, memory_mb=256, wall_seconds=60)
    own = own_server(limits=limits, max_concurrent_jobs=1)
    return own.address, own.researcher


def test_one_call_returns_the_finished_job(one_slot) -> None:
    address, token = one_slot
    with Client(address, token) as client:
        reply = client._call(  # the raw RPC, to see that no WatchJob is needed
            client._jobs.SubmitJob,
            pb.SubmitJobRequest(script=QUICK, dataset="stays", request_id="one", wait=True),
        )
    assert reply.state == pb.JOB_STATE_SUCCEEDED
    assert '"n"' in reply.result_json


def test_a_job_longer_than_the_deadline_is_followed_after_the_call(one_slot) -> None:
    address, token = one_slot
    with Client(address, token, timeout=2.0) as client:
        start = time.monotonic()
        reply = client._call(
            client._jobs.SubmitJob,
            pb.SubmitJobRequest(script=SLOW, dataset="stays", request_id="slow", wait=True),
        )
        answered = time.monotonic() - start
        assert reply.state == pb.JOB_STATE_RUNNING  # a second before the 2 s deadline
        assert answered < 2.0
        job = client.run(SLOW, "stays", request_id="slow")  # the same job, followed
    assert job.state == "SUCCEEDED" and job.result == {"x": 60000000}


def test_a_waiting_call_sees_its_queued_job_cancelled(one_slot) -> None:
    address, token = one_slot
    with Client(address, token) as client:
        busy = client.submit(FOREVER, "stays", wait=False)  # takes the only slot
        outcome: list[str] = []

        def wait_for_queued() -> None:
            with Client(address, token) as waiter:
                outcome.append(waiter.submit(QUICK, "stays", request_id="queued").state)

        waiting = threading.Thread(target=wait_for_queued)
        waiting.start()
        deadline = time.monotonic() + 10
        while not any(j.state == "QUEUED" for j in client.list_jobs()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        queued = next(j for j in client.list_jobs() if j.state == "QUEUED")
        client.cancel_job(queued.job_id)
        waiting.join(timeout=5)
        assert not waiting.is_alive(), "the waiting call did not see the cancel"
        assert outcome == ["CANCELLED"]
        client.cancel_job(busy.job_id)
