"""Benchmarks are not tests, but a tiny run keeps them from rotting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_release_path_benchmark_runs_at_tiny_size() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "release_path.py"),
            "--rows",
            "2000",
            "--repeat",
            "1",
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "group_by(department)" in done.stdout
    assert "3-release job" in done.stdout


def test_sandbox_overhead_benchmark_runs_at_tiny_size() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sandbox_overhead.py"), "--jobs", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "job forked from the template" in done.stdout
    assert "layer seccomp" in done.stdout


def test_timing_channel_benchmark_runs_at_tiny_size() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "timing_channel.py"),
            "--rows",
            "2000",
            "--repeat",
            "3",
            "--quantum-ms",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "private keys" in done.stdout
    assert "padding quantum: 5 ms" in done.stdout
