"""Benchmark of the per-job sandbox overhead: worker start, isolation layers, teardown.

Not a test: run it by hand (`python bench/sandbox_overhead.py --jobs 50`).

Target (issue 5): at most 25 ms per job on a 2-core machine. A "job" here is the
whole `jobs._sandbox.run_worker` of a trivial script (``result["x"] = 1``):
spawn or fork, limits, every isolation layer, RestrictedPython compile and run,
result, teardown. It is measured two ways in the same run: forked from the
template process, and as a new interpreter (``ENCLAVE_NO_TEMPLATE=1``). Each
isolation layer's own cost is measured in fresh interpreters, calling the
layer's function directly; a bare ``fork`` + ``waitpid`` of this process is the
yardstick for what a process costs at all.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs import Limits  # noqa: E402
from jobs._sandbox import Isolation, run_worker  # noqa: E402

LAYER_PROBE = """
import sys, time
sys.path.insert(0, {root!r})
from jobs._sandbox import _isolation as layers
out = []
for name, call in (("network", layers.isolate_network),
                   ("filesystem", lambda: layers.hide_directory({hide!r})),
                   ("seccomp", layers.install_seccomp)):
    start = time.perf_counter()
    status = call()
    out.append(f"{{name}} {{1000 * (time.perf_counter() - start):.3f}} {{status.split(':')[0]}}")
print("\\n".join(out))
"""


def _jobs(n: int, hide: str, template: bool) -> list[float]:
    if template:
        os.environ.pop("ENCLAVE_NO_TEMPLATE", None)
    else:
        os.environ["ENCLAVE_NO_TEMPLATE"] = "1"
    isolation = Isolation(hide=hide)
    run_worker('result["x"] = 1', "ds", Limits(), lambda _r: None, None, isolation)  # warm
    times = []
    for _ in range(n):
        start = time.perf_counter()
        out = run_worker('result["x"] = 1', "ds", Limits(), lambda _r: None, None, isolation)
        times.append(1000 * (time.perf_counter() - start))
        assert out.result == {"x": 1}
    return times


def _fork(n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        times.append(1000 * (time.perf_counter() - start))
    return times


def _layers(n: int, hide: str) -> dict[str, list[float]]:
    costs: dict[str, list[float]] = {}
    for _ in range(n):
        done = subprocess.run(
            [sys.executable, "-I", "-c", LAYER_PROBE.format(root=str(ROOT), hide=hide)],
            capture_output=True,
            text=True,
            check=True,
            env={},
        )
        for line in done.stdout.splitlines():
            name, ms, status = line.split()
            costs.setdefault(f"{name} ({status})", []).append(float(ms))
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs per way of starting them")
    args = parser.parse_args()
    hide = tempfile.mkdtemp(prefix="enclave-bench-hidden-")
    fork = _fork(args.jobs)
    print(f"{'what':38} {'median ms':>9} {'p90 ms':>7}")

    def row(what: str, times: list[float]) -> None:
        p90 = sorted(times)[int(0.9 * (len(times) - 1))]
        print(f"{what:38} {statistics.median(times):9.2f} {p90:7.2f}")

    row("bare fork + waitpid (yardstick)", fork)
    template = _jobs(args.jobs, hide, template=True)
    row("job forked from the template", template)
    row("job in a new interpreter", _jobs(args.jobs, hide, template=False))
    for name, times in _layers(max(3, args.jobs // 10), hide).items():
        row(f"  layer {name}", times)
    median = statistics.median(template)
    verdict = "met" if median <= 25 else "NOT MET"
    print(f"target <= 25 ms per job (template, median {median:.1f} ms): {verdict}")


if __name__ == "__main__":
    main()
