"""`make bench`: run the benchmark suites and write their sections of docs/benchmarks.md.

Each suite's block in the report sits between ``<!-- bench:NAME:begin -->`` and
``<!-- bench:NAME:end -->`` markers and is replaced by a new run; the prose
around the blocks (what the figures mean, why a target is missed) is written
by hand and kept. ``--smoke`` runs every suite at tiny sizes into a scratch
file, as CI does, so that the benchmarks cannot rot.

Suites: ``release`` (DP release vs raw Polars, 1M and 10M rows), ``jobs``
(end-to-end latency, throughput, empty-job overhead, memory), ``sandbox``
(per-job isolation cost), ``timing`` (data-dependent release time),
``registration`` (checking and storing a provider's CSV vs raw Polars
converting it, 1M and 6M rows, time and memory). The ledger
benchmark (``bench/ledger_debits.py``) needs PostgreSQL and ~10 minutes: run
it with ``--suites ledger``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import jobs_e2e, registration, release_path
from bench._common import REPORT, Section, run_python, write_report

SUITES = ("release", "jobs", "sandbox", "timing", "registration")


def _fenced(text: str) -> str:
    return "```text\n" + text.strip() + "\n```"


def _suites(smoke: bool) -> dict[str, Callable[[], Section]]:
    sizes = [20_000] if smoke else [1_000_000, 10_000_000]
    sandbox_args = ["bench/sandbox_overhead.py", "--jobs", "3" if smoke else "50"]
    timing_args = ["bench/timing_channel.py", "--rows", "20000" if smoke else "1000000"]
    timing_args += ["--repeat", "3" if smoke else "21"]
    ledger_args = ["bench/ledger_debits.py", "--debits", "50" if smoke else "2000"]
    if smoke:
        ledger_args += ["--clients", "1,2", "--rounds", "1", "--backends", "sqlite"]
    else:
        ledger_args += ["--processes"]
    return {
        "release": lambda: release_path.run(sizes, 3 if smoke else 11),
        "jobs": lambda: (
            jobs_e2e.run(20_000, 20_000, 5, 1.0, [1, 4], 4)
            if smoke
            else jobs_e2e.run(1_000_000, 10_000_000, 200, 10.0, [1, 8, 32], 32)
        ),
        "sandbox": lambda: Section(
            "sandbox", "python " + " ".join(sandbox_args), _fenced(run_python(sandbox_args))
        ),
        "timing": lambda: Section(
            "timing", "python " + " ".join(timing_args), _fenced(run_python(timing_args))
        ),
        "registration": lambda: registration.run(
            [20_000] if smoke else [1_000_000, 6_000_000], 1 if smoke else 5
        ),
        "ledger": lambda: Section(
            "ledger", "python " + " ".join(ledger_args), _fenced(run_python(ledger_args))
        ),
    }


def main() -> None:
    """Run the chosen suites and write their blocks."""
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--suites",
        default=",".join(SUITES),
        help=f"comma-separated, of {', '.join((*SUITES, 'ledger'))} (default: all but ledger)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--output", type=Path, help=f"the report (default: {REPORT})")
    args = parser.parse_args()
    suites = _suites(args.smoke)
    chosen = [name.strip() for name in args.suites.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in suites]
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}")
    output = args.output or REPORT
    for name in chosen:
        started = time.monotonic()
        print(f"bench: {name} ...", flush=True)
        section = suites[name]()
        if args.smoke:
            section.command += " (smoke sizes)"
        write_report([section], output)  # each as it ends: a later failure keeps it
        print(f"bench: {name} done in {time.monotonic() - started:.0f} s", flush=True)
    print(f"bench: wrote {output}")


if __name__ == "__main__":
    main()
