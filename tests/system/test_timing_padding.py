"""Release-time padding (``--release-time-quantum-ms``): how long a release took
on the data is rounded up to a whole number of quanta, failures included."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from enclave import Client, JobFailed
from enclave._app import Enclave
from jobs import Limits
from jobs._service import _pad

QUANTUM = 0.4


@pytest.mark.parametrize("already", [0.0, 0.05, 0.39, 0.45, 0.81])
def test_pad_rounds_up_to_the_next_whole_quantum(already: float) -> None:
    started = time.monotonic() - already
    _pad(started, QUANTUM)
    elapsed = time.monotonic() - started
    whole = max(1, -(-already // QUANTUM))  # quanta the padding must reach
    assert whole * QUANTUM <= elapsed < whole * QUANTUM + 0.1


def test_no_quantum_means_no_wait() -> None:
    started = time.monotonic()
    _pad(started, 0.0)
    assert time.monotonic() - started < 0.01


@pytest.fixture
def padded(own_server) -> tuple[str, str, Enclave]:
    limits = Limits(cpu_seconds=10, memory_mb=256, wall_seconds=30, release_quantum_seconds=QUANTUM)
    own = own_server(limits=limits)
    return own.address, own.researcher, own.app


def test_every_release_of_a_job_takes_whole_quanta(padded: tuple[str, str, Enclave]) -> None:
    address, token, _app = padded
    script = (
        "a = release(dataset().count(), epsilon=0.1)\n"
        'b = release(dataset().filter(col("age") >= 200).count(), epsilon=0.1)\n'
        'result["n"] = [a.value, b.value]\n'
    )
    with Client(address, token) as alice:
        start = time.monotonic()
        job = alice.run(script, "stays")
        took = time.monotonic() - start
        assert len(job.result["n"]) == 2
        assert took >= 2 * QUANTUM  # two releases, each padded to a quantum at least
        assert alice.budget("stays")[0].epsilon_spent == Decimal("0.2")


def test_a_failed_evaluation_is_padded_too(padded: tuple[str, str, Enclave]) -> None:
    """How soon a failure comes could depend on the data: it waits its quantum."""
    address, token, app = padded
    entry = app.catalog.get("stays")
    assert entry is not None
    entry.path.write_bytes(b"PAR1 not really parquet")  # fails at once when read
    with Client(address, token) as alice:
        start = time.monotonic()
        with pytest.raises(JobFailed) as failed:
            alice.run('result["n"] = release(dataset().count(), epsilon=0.1)', "stays")
        took = time.monotonic() - start
    assert failed.value.code.name == "INTERNAL"
    assert took >= QUANTUM


@pytest.mark.parametrize("value", ["-5", "nan", "60001"])
def test_serve_refuses_a_quantum_out_of_range(tmp_path: Path, value: str) -> None:
    serve = [sys.executable, "-m", "enclave", "serve", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*serve, "--insecure", "--listen", "127.0.0.1:0", "--release-time-quantum-ms", value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "--release-time-quantum-ms must be between 0 and 60000" in done.stderr
