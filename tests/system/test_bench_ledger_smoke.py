"""The ledger benchmark is not a test, but a tiny run keeps it from rotting.

It also re-checks, under a little real concurrency, what the benchmark checks
at size: no overspend, and every debit in a chain that verifies.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "ledger_debits.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), "--debits", "40", "--clients", "1,4", "--rounds", "2", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _assert_table(stdout: str, backend: str, modes: tuple[str, ...]) -> None:
    assert "bare commits/s" in stdout and "debits/bare" in stdout and "overspend" in stdout
    rows = [line.split() for line in stdout.splitlines() if line.startswith(backend + " ")]
    assert {(r[1], r[2]) for r in rows} == {(c, m) for c in ("1", "4") for m in modes}, stdout
    for row in rows:
        assert row[6] == "0", f"overspend in {row}"  # the overspend column
    assert "target zero overspend: met" in stdout


def test_ledger_benchmark_runs_at_tiny_size_on_sqlite() -> None:
    done = _run("--backends", "sqlite", "--processes")
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_table(done.stdout, "sqlite", ("threads", "processes"))
    assert "synchronous=FULL (durable)" in done.stdout


def test_ledger_benchmark_runs_at_tiny_size_on_postgresql(postgres: object) -> None:
    with postgres.database() as url:  # type: ignore[attr-defined]
        done = _run("--backends", "postgresql", "--postgres-url", url)
    assert done.returncode == 0, done.stdout + done.stderr
    # The tests' cluster runs with fsync off: the bench runs, and says so.
    _assert_table(done.stdout, "postgresql", ("threads",))
