"""How much a release's duration depends on the confidential data (the timing channel).

Not a test: run it by hand (`python bench/timing_channel.py --rows 1000000`).
A script cannot read a clock (no `time`, no threads, and it is blocked while
the host evaluates), but a researcher sees how long the whole job took. This
measures, for one plan at a time, the host's release (price + evaluate) on two
datasets that have the *same public schema and row count* and differ only in
their values -- the extremes a researcher could hope to tell apart. What
remains is the aggregate's own work over the data (docs/security.md, "Timing").
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs import DatasetHandle, Schema  # noqa: E402
from jobs._compiler import evaluate, price, warm_up  # noqa: E402
from jobs._plan import Agg, BinOp, Col, Lit, Query  # noqa: E402
from jobs._service import _pad  # noqa: E402

SCHEMA = """
max_rows = {rows}
privacy_unit = {{ column = "id", max_rows_per_person = 1 }}

[columns.id]
type = "string"

[columns.x]
type = "float"
bounds = [0, 100]

[columns.key]
type = "string"
max_keys = {keys}
"""

COUNT_SUM = (Agg("count", None, None, "n"), Agg("sum", "x", None, "s"))
#: (name, plan, the two datasets' x and key columns as functions of the row count)
CASES: list[tuple[str, Query, Callable[[int], pl.DataFrame], Callable[[int], pl.DataFrame]]] = [
    (
        "filter x < 50, count+sum: no row passes vs all pass",
        Query("t", (BinOp("lt", Col("x"), Lit(50)),), (), COUNT_SUM, "record"),
        lambda n: _frame(n, x=pl.lit(90.0)),
        lambda n: _frame(n, x=pl.lit(10.0)),
    ),
    (
        "sum(x): all zero vs uniform",
        Query("t", (), (), (Agg("sum", "x", None, "s"),), "scalar"),
        lambda n: _frame(n, x=pl.lit(0.0)),
        lambda n: _frame(n, x=(pl.int_range(n) * 7919 % 10_000) / 100.0),
    ),
    (
        "median(x): constant vs uniform",
        Query("t", (), (), (Agg("quantile", "x", None, "m", 0.5, None),), "scalar"),
        lambda n: _frame(n, x=pl.lit(50.0)),
        lambda n: _frame(n, x=(pl.int_range(n) * 7919 % 10_000) / 100.0),
    ),
    (
        "group_by(key) count [private keys]: 10 keys vs n/100 keys",
        Query("t", (), ("key",), (Agg("count", None, None, "n"),), "table"),
        lambda n: _frame(n, key=(pl.int_range(n) % 10).cast(pl.String)),
        lambda n: _frame(n, key=(pl.int_range(n) % max(n // 100, 1)).cast(pl.String)),
    ),
]


def _frame(n: int, x: pl.Expr | None = None, key: pl.Expr | None = None) -> pl.DataFrame:
    base = pl.DataFrame({"id": pl.int_range(n, eager=True).cast(pl.String)})
    return base.with_columns(
        x=(pl.lit(1.0) if x is None else x).cast(pl.Float64),
        key=(pl.lit("a") if key is None else key).cast(pl.String),
    )


def _times(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # untimed: page cache and thread start-up
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    """Print, per plan, the median release time on each dataset and their gap."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument(
        "--quantum-ms", type=float, default=0.0, help="pad as --release-time-quantum-ms does"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="enclave-timing-"))
    try:
        _run(args.rows, args.repeat, args.quantum_ms / 1000, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _release(query: Query, handle: DatasetHandle, delta: Decimal, quantum: float) -> None:
    priced = price(query, handle, Decimal("0.5"), delta)
    started = time.monotonic()  # as the job service pads: evaluation only
    try:
        evaluate(priced)
    finally:
        _pad(started, quantum)


def _run(rows: int, repeat: int, quantum: float, tmp: Path) -> None:
    schema = Schema.from_toml(SCHEMA.format(rows=rows, keys=max(rows // 100, 10)))
    warm_up()
    print(
        f"rows: {rows:,}; medians of {repeat} releases (price + evaluate) per dataset; "
        f"padding quantum: {quantum * 1e3:g} ms"
    )
    print(f"{'plan: dataset A vs dataset B':60} {'A ms':>7} {'B ms':>7} {'gap ms':>7} {'noise':>6}")
    for i, (name, query, make_a, make_b) in enumerate(CASES):
        medians, spreads = [], []
        delta = Decimal("1e-7") if query.group_by else Decimal(0)
        for label, make in (("a", make_a), ("b", make_b)):
            path = tmp / f"{i}{label}.parquet"
            make(rows).write_parquet(path)
            handle = DatasetHandle("t", schema, path)
            times = _times(lambda h=handle, q=query, d=delta: _release(q, h, d, quantum), repeat)
            medians.append(statistics.median(times))
            q1, _, q3 = statistics.quantiles(times, n=4)
            spreads.append(q3 - q1)
        gap = medians[1] - medians[0]
        print(
            f"{name:60} {medians[0] * 1e3:7.1f} {medians[1] * 1e3:7.1f} {gap * 1e3:+7.1f} "
            f"{max(spreads) * 1e3:6.1f}"
        )
    print("noise: the larger interquartile range of one release's time, in ms")


if __name__ == "__main__":
    main()
