"""Benchmark of the foundation's release path, as ratios to raw Polars.

Not a test: run it by hand (`python bench/release_path.py --rows 1000000`). It
writes the demo tourism dataset at the requested size, then for each plan times
(a) the raw, non-private Polars computation of the same plan on the same
Parquet file and (b) Enclave's price + evaluate (OpenDP measurement built,
calibrated, run), reporting medians and their ratio; then the end-to-end
latency of a 3-release job over gRPC on loopback.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "demo"))

from make_dataset import generate  # noqa: E402

from jobs import DatasetHandle, Schema, conform  # noqa: E402
from jobs._compiler import evaluate, price, warm_up  # noqa: E402
from jobs._plan import Agg, BinOp, Col, Lit, Query  # noqa: E402

ADULTS = (BinOp("ge", Col("age"), Lit(30)),)
PLANS = {
    "count": (
        Query("b", (), (), (Agg("count", None, None, "n"),), "scalar"),
        lambda lf: lf.select(pl.len()),
    ),
    "sum(nights)": (
        Query("b", (), (), (Agg("sum", "nights", None, "s"),), "scalar"),
        lambda lf: lf.select(pl.col("nights").clip(1, 30).sum()),
    ),
    "mean(spend)": (
        Query("b", (), (), (Agg("mean", "spend_eur", None, "m"),), "scalar"),
        lambda lf: lf.select(pl.col("spend_eur").clip(0, 5000).mean()),
    ),
    "variance(spend)": (
        Query("b", (), (), (Agg("variance", "spend_eur", None, "v"),), "scalar"),
        lambda lf: lf.select(pl.col("spend_eur").clip(0, 5000).var()),
    ),
    "histogram(nights, 4 bins)": (
        Query("b", (), ("nights",), (Agg("count", None, None, "n"),), "table", bins=(2, 4, 8)),
        lambda lf: lf.group_by(pl.col("nights").cut([2, 4, 8], left_closed=True)).agg(pl.len()),
    ),
    "filter+count+sum+mean": (
        Query(
            "b",
            ADULTS,
            (),
            (
                Agg("count", None, None, "n"),
                Agg("sum", "nights", None, "s"),
                Agg("mean", "spend_eur", None, "m"),
            ),
            "record",
        ),
        lambda lf: lf.filter(pl.col("age") >= 30).select(
            pl.len(), pl.col("nights").sum(), pl.col("spend_eur").mean()
        ),
    ),
    "group_by(department) count+mean": (
        Query(
            "b",
            (),
            ("department",),
            (Agg("count", None, None, "n"), Agg("mean", "spend_eur", None, "m")),
            "table",
        ),
        lambda lf: lf.group_by("department").agg(pl.len(), pl.col("spend_eur").mean()),
    ),
    "median(spend)": (
        Query("b", (), (), (Agg("quantile", "spend_eur", None, "m", 0.5, None),), "scalar"),
        lambda lf: lf.select(pl.col("spend_eur").median()),
    ),
    "quantiles(age: .1 .5 .9)": (
        Query(
            "b",
            (),
            (),
            tuple(
                Agg("quantile", "age", None, f"q{i}", q, None)
                for i, q in enumerate((0.1, 0.5, 0.9))
            ),
            "record",
        ),
        lambda lf: lf.select(pl.col("age").quantile(q).alias(f"q{q}") for q in (0.1, 0.5, 0.9)),
    ),
    "group_by(town) count [private keys]": (
        Query("b", (), ("town",), (Agg("count", None, None, "n"),), "table"),
        lambda lf: lf.group_by("town").agg(pl.len()),
    ),
}
#: Plans that release keys that are not public spend this δ too.
DELTA = {"group_by(town) count [private keys]": Decimal("1e-7")}
#: Plans also run on the same data declared zCDP (ρ = 0.5 instead of ε = 0.5).
ZCDP = ("count", "mean(spend)", "group_by(department) count+mean", "median(spend)")


def median_seconds(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # untimed: the first run of a plan pays for page cache and thread start-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--jobs", type=int, default=30, help="jobs per latency measurement")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="enclave-bench-"))
    try:
        _run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, tmp: Path) -> None:
    schema_text = (ROOT / "demo" / "tourism_stays.schema.toml").read_text()
    schema_text = schema_text.replace("max_rows = 1_000_000", f"max_rows = {max(args.rows, 1)}")
    # The generator's rare hamlets grow with the rows: more than the demo's 5,000 towns.
    schema_text = schema_text.replace("max_keys = 5000", "max_keys = 50000")
    schema = Schema.from_toml(schema_text)
    csv_path = tmp / "stays.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(schema.names)
        writer.writerows(generate(args.rows, 1))
    parquet = tmp / "stays.parquet"
    conform(pl.read_csv(csv_path, infer_schema=False), schema).write_parquet(parquet)
    handle = DatasetHandle("b", schema, parquet)
    zcdp = DatasetHandle(
        "b", Schema.from_toml('privacy_definition = "zcdp"\n' + schema_text), parquet
    )
    warm_up()
    print(f"rows: {args.rows:,}; medians of {args.repeat} runs; machine: {_machine()}")
    print(f"{'plan':42} {'raw ms':>8} {'price ms':>9} {'DP ms':>8} {'ratio':>7}")
    runs = [(name, handle) for name in PLANS] + [(name, zcdp) for name in ZCDP]
    for name, target in runs:
        query, raw = PLANS[name]
        delta = DELTA.get(name, Decimal(0))
        label = name + (" [zCDP]" if target is zcdp else "")
        raw_s = median_seconds(lambda raw=raw: raw(pl.scan_parquet(parquet)).collect(), args.repeat)
        price_s = median_seconds(
            lambda q=query, t=target, d=delta: price(q, t, Decimal("0.5"), d), args.repeat
        )
        dp_s = median_seconds(
            lambda q=query, t=target, d=delta: evaluate(price(q, t, Decimal("0.5"), d)),
            args.repeat,
        )
        print(
            f"{label:42} {raw_s * 1e3:8.1f} {price_s * 1e3:9.1f} {dp_s * 1e3:8.1f} "
            f"{dp_s / raw_s:6.2f}x"
        )
    _job_latency(tmp, csv_path, schema_text, args.jobs)


def _job_latency(tmp: Path, csv_path: Path, schema_text: str, jobs: int) -> None:
    from enclave import Client
    from enclave._app import Enclave
    from enclave._server import start_server

    app = Enclave(tmp / "server")
    _p, admin = app.principals.create("root", "admin", created_by="bench")
    running = start_server(app, "127.0.0.1:0", insecure=True)
    address = f"127.0.0.1:{running.port}"
    with Client(address, admin) as c:
        provider = c.create_principal("prov", "provider")
        researcher = c.create_principal("alice", "researcher")
    with Client(address, provider) as c:
        c.register_dataset("stays", csv_path, schema_text)
        c.grant("stays", "alice", 1000)
    script = (
        "a = release(dataset().count(), epsilon=0.1)\n"
        'b = release(dataset().mean("spend_eur"), epsilon=0.1)\n'
        'c = release(dataset().group_by("season").count(), epsilon=0.1)\n'
        'result["x"] = [a, b, c]\n'
    )
    empty = 'result["x"] = 1\n'
    with Client(address, researcher) as c:
        for label, body in (("3-release job", script), ("empty job", empty)):
            times = []
            for _ in range(jobs):
                start = time.perf_counter()
                c.run(body, "stays")
                times.append(time.perf_counter() - start)
            times.sort()
            print(
                f"{label:34} p50 {statistics.median(times) * 1e3:7.1f} ms   "
                f"p99 {times[int(0.99 * (len(times) - 1))] * 1e3:7.1f} ms"
                "  (submit -> result, gRPC loopback)"
            )
    running.stop(5)


def _machine() -> str:
    cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{cpu} cores, Python {sys.version.split()[0]}"


if __name__ == "__main__":
    main()
