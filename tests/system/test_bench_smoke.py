"""Benchmarks are not tests, but a tiny run keeps them from rotting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_bench_runs_every_suite_at_tiny_size(tmp_path: Path) -> None:
    """`make bench` at smoke sizes: every suite runs and writes its block."""
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nHand-written prose that must survive.\n")
    suites = "release,jobs,sandbox,timing,registration,ledger"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run_all.py"),
            "--smoke",
            "--suites",
            suites,
            "--output",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert "Hand-written prose that must survive." in text
    for name in suites.split(","):
        assert text.count(f"<!-- bench:{name}:begin") == 1
        assert f"<!-- bench:{name}:end -->" in text
    for needle in (
        "group_by(region: 50 public keys)",
        "thresholded",
        "3-release job",
        "small jobs/s",
        "bare unary call",
        "server RSS idle",
        "job forked from the template",
        "private keys",
        "| person | 4,000 |",  # registration dropped the fifth row of each visitor
        "registration / raw",
        "Machine: ",
    ):
        assert needle in text, needle
    # A second run replaces the blocks instead of adding new ones.
    again = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run_all.py"),
            "--smoke",
            "--suites",
            "sandbox",
            "--output",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert report.read_text().count("<!-- bench:sandbox:begin") == 1


def test_replicas_benchmark_runs_at_tiny_size(postgres) -> None:
    """bench/replicas.py (docs/scaling.md): two replicas on one PostgreSQL ledger."""
    bench = [sys.executable, str(ROOT / "bench" / "replicas.py"), "--seconds", "1"]
    with postgres.database() as url:
        done = subprocess.run(
            [*bench, "--clients", "2", "--postgres-url", url],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    assert "| 2 replicas |" in done.stdout
    assert done.stdout.count("| exact |") == 2  # the ledger matched the finished jobs
