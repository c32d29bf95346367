"""Jobs end to end over gRPC on loopback: latency, throughput, fixed overhead, memory.

Not a test: `make bench` runs it (or `python bench/jobs_e2e.py`). The server
is a real `enclave serve` subprocess on SQLite in a temporary data dir; the
clients are threads of this process, one `Client` (one channel) each. It
measures, in one run:

* submit -> result latency of a 3-release job on a 1M-row dataset (p50, p99);
* throughput of small jobs (one count on a 10,000-row dataset) with 1, 8 and
  32 concurrent clients;
* an empty job (sandbox + gRPC + ledger, no release) beside a bare gRPC unary
  call (the health check) and an authenticated one (the researcher's budget);
* the server's RSS at idle and its peak while 32 jobs run at once on a
  10M-row dataset, plus the workers' own memory (PSS, so that pages they
  share with their template are counted once).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    ROOT,
    Section,
    enclave_serve,
    percentile,
    schema_text,
    times_ms,
    write_dataset,
)
from enclave import Client
from jobs._sandbox._runner import SPARES

THREE_RELEASES = (
    "a = release(dataset().count(), epsilon=0.01)\n"
    'b = release(dataset().mean("spend"), epsilon=0.01)\n'
    'c = release(dataset().group_by("region").sum("spend"), epsilon=0.01)\n'
    'result["x"] = [a.value, b.value, len(c)]\n'
)
SMALL = 'result["n"] = release(dataset().count(), epsilon=0.001).value\n'
EMPTY = 'result["x"] = 1\n'
#: What each of the 32 concurrent jobs of the memory test does on 10M rows.
HEAVY = (
    'a = release(dataset().mean("spend"), epsilon=0.01)\n'
    'b = release(dataset().group_by("region").sum("spend"), epsilon=0.01)\n'
    'result["x"] = [a.value, len(b)]\n'
)


@dataclass
class Server:
    """A running `enclave serve` subprocess and the tokens to talk to it."""

    proc: subprocess.Popen[bytes]
    address: str
    researcher: str

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.contextmanager
def serving(tmp: Path, datasets: dict[str, int], max_jobs: int, tag: str) -> Iterator[Server]:
    """Start a server with ``datasets`` (name -> rows) registered and granted."""
    data_dir = tmp / f"server-{tag}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    make_admin = ["admin", "create-principal", "root", "--role", "admin"]
    admin = subprocess.run(
        [sys.executable, "-m", "enclave", *make_admin, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    options = ["--data-dir", str(data_dir), "--max-jobs", str(max_jobs)]
    options += ["--max-jobs-per-researcher", "256", "--max-queued-jobs", "1024"]
    with enclave_serve(tmp / f"ready-{tag}", *options) as (proc, address):
        with Client(address, admin) as c:
            provider = c.create_principal("prov", "provider")
            researcher = c.create_principal("alice", "researcher")
        with Client(address, provider) as c:
            for name, rows in datasets.items():
                path = write_dataset(rows, tmp / f"{name}.parquet")
                c.register_dataset(name, path, schema_text(rows))
                path.unlink()
                c.grant(name, "alice", 1_000_000)
        yield Server(proc, address, researcher)


def latency(server: Server, jobs: int) -> dict[str, float]:
    """p50/p99 of submit -> result for the 3-release job, and the fixed overheads."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    out: dict[str, float] = {}
    with Client(server.address, server.researcher) as c:
        three = times_ms(lambda: c.run(THREE_RELEASES, "big"), jobs)
        empty = times_ms(lambda: c.run(EMPTY, "big"), jobs)
        budget = times_ms(lambda: c.budget("big"), jobs)
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        bare = times_ms(lambda: stub.Check(health_pb2.HealthCheckRequest()), jobs)
    for name, values in (
        ("three", three),
        ("empty", empty),
        ("budget", budget),
        ("bare", bare),
    ):
        out[f"{name} p50"] = percentile(values, 50)
        out[f"{name} p99"] = percentile(values, 99)
    return out


def throughput(addresses: list[str], token: str, clients: int, seconds: float) -> tuple[float, int]:
    """Small jobs/s with ``clients`` clients spread over ``addresses``; jobs finished in all.

    Each client runs one job first (its channel warm), then as many as it can
    until ``seconds`` have passed since all were ready.
    """
    done = [0] * clients
    start_at = threading.Barrier(clients + 1)
    stop = threading.Event()

    def client(i: int) -> None:
        with Client(addresses[i % len(addresses)], token) as c:
            c.run(SMALL, "small")
            done[i] += 1
            start_at.wait()
            while not stop.is_set():
                c.run(SMALL, "small")
                done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start_at.wait()
    before = sum(done)
    began = time.perf_counter()
    time.sleep(seconds)
    counted = sum(done) - before
    elapsed = time.perf_counter() - began
    stop.set()
    for t in threads:
        t.join()
    return counted / elapsed, sum(done)


def _kib(pid: int, field: str, file: str = "status") -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            children.extend(int(c) for c in text.split())
    out = list(children)
    for child in children:
        out.extend(_descendants(child))
    return out


def memory(server: Server, concurrent: int) -> dict[str, float]:
    """Server RSS at idle and at peak with ``concurrent`` jobs; workers' PSS at peak."""
    with Client(server.address, server.researcher) as c:
        c.run(HEAVY, "huge")  # warm: first scan, compiled plans, template started
    time.sleep(1.0)
    idle = _kib(server.pid, "VmRSS")
    idle_children = sum(_kib(p, "Pss", "smaps_rollup") for p in _descendants(server.pid))
    peak, peak_workers, running = idle, 0, 0
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with Client(server.address, server.researcher) as c:
                c.run(HEAVY, "huge")
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(concurrent)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, _kib(server.pid, "VmRSS"))
        kids = _descendants(server.pid)
        # The template and its spare workers (forked ahead of jobs) are among them.
        running = max(running, len(kids) - 1 - SPARES)
        peak_workers = max(
            peak_workers, sum(_kib(p, "Pss", "smaps_rollup") for p in kids) - idle_children
        )
        time.sleep(0.02)
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} job(s) failed: {errors[0]}")
    return {
        "idle MiB": idle / 1024,
        "peak MiB": peak / 1024,
        "workers MiB": peak_workers / 1024,
        "max workers": running,
        "seconds": time.perf_counter() - began,
    }


def run(
    big_rows: int, huge_rows: int, jobs: int, seconds: float, clients: list[int], concurrent: int
) -> Section:
    """All the measurements; the report section."""
    tmp = Path(tempfile.mkdtemp(prefix="enclave-e2e-"))
    try:
        with serving(tmp, {"big": big_rows, "small": 10_000}, max_jobs=4, tag="a") as server:
            lat = latency(server, jobs)
            rates = {
                n: throughput([server.address], server.researcher, n, seconds)[0] for n in clients
            }
        with serving(tmp, {"huge": huge_rows}, max_jobs=concurrent, tag="b") as server:
            mem = memory(server, concurrent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Section(
        "jobs",
        _command(big_rows, huge_rows, jobs, seconds, clients, concurrent),
        _body(big_rows, huge_rows, jobs, seconds, lat, rates, mem, concurrent),
    )


def _command(
    big: int, huge: int, jobs: int, seconds: float, clients: list[int], concurrent: int
) -> str:
    return (
        f"python bench/jobs_e2e.py --rows {big} --memory-rows {huge} --jobs {jobs} "
        f"--seconds {seconds:g} --clients {' '.join(map(str, clients))} "
        f"--concurrent {concurrent}"
    )


def _verdict(ok: bool, miss: str) -> str:
    return "met" if ok else f"**missed** ({miss})"


def _body(
    big: int,
    huge: int,
    jobs: int,
    seconds: float,
    lat: dict[str, float],
    rates: dict[int, float],
    mem: dict[str, float],
    concurrent: int,
) -> str:
    p50, p99 = lat["three p50"], lat["three p99"]
    best = max(rates.values())
    ratio = mem["peak MiB"] / mem["idle MiB"]
    lines = [
        f"Server: `enclave serve` on SQLite, `--max-jobs 4`; clients: threads of the bench, "
        f"one channel each, submit -> result through `WatchJob`. {jobs} jobs per latency "
        f"figure; throughput over {seconds:g} s per client count.",
        "",
        "| what | p50 ms | p99 ms | target |",
        "|---|---:|---:|---|",
        f"| 3-release job (count, mean, 50-key group-by sum) on {big:,} rows "
        f"| {p50:.1f} | {p99:.1f} | p50 <= 30 ms: "
        f"{_verdict(p50 <= 30, f'by {p50 - 30:.1f} ms')}; p99 <= 100 ms: "
        f"{_verdict(p99 <= 100, f'by {p99 - 100:.1f} ms')} |",
        f"| empty job (sandbox + gRPC + ledger) | {lat['empty p50']:.1f} | "
        f"{lat['empty p99']:.1f} | {lat['empty p50'] / lat['bare p50']:.1f}x the bare call |",
        f"| authenticated unary call (`GetBudget`) | {lat['budget p50']:.2f} | "
        f"{lat['budget p99']:.2f} | |",
        f"| bare unary call (health `Check`) | {lat['bare p50']:.2f} | {lat['bare p99']:.2f} | |",
        "",
        "| concurrent clients | small jobs/s |",
        "|---:|---:|",
        *(f"| {n} | {rate:.0f} |" for n, rate in rates.items()),
        "",
        f"Throughput target >= 150 small jobs/s: "
        f"{_verdict(best >= 150, f'best {best:.0f}/s, {best / 150:.2f}x the target')}.",
        "",
        f"Memory, {huge:,}-row dataset, server started with `--max-jobs {concurrent}`, "
        f"{concurrent} jobs submitted at once (each a mean and a 50-key group-by sum; "
        f"up to {int(mem['max workers'])} workers seen at once, all done in "
        f"{mem['seconds']:.1f} s):",
        "",
        "| server RSS idle MiB | server RSS peak MiB | peak / idle | workers' PSS at peak MiB |",
        "|---:|---:|---:|---:|",
        f"| {mem['idle MiB']:.0f} | {mem['peak MiB']:.0f} | {ratio:.2f}x | "
        f"{mem['workers MiB']:.0f} |",
        "",
        f"Target peak <= 1.2x idle: {_verdict(ratio <= 1.2, f'{ratio:.2f}x')}.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Print the section's Markdown."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--memory-rows", type=int, default=10_000_000)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--concurrent", type=int, default=32)
    args = parser.parse_args()
    section = run(
        args.rows, args.memory_rows, args.jobs, args.seconds, args.clients, args.concurrent
    )
    print(section.body)


if __name__ == "__main__":
    main()
