"""Variance, standard deviation and histograms: priced like the rest, and their
noise and intervals checked statistically (no seeding: the noise is OpenDP's).

Failure probabilities:

* Interval coverage: each of the 2,000 releases covers the true value with
  probability p >= 0.95 (union bound over the three parts' 98.33% intervals).
  By the Chernoff-Hoeffding bound, P(coverage < 0.92) <= exp(-n KL(0.92 || 0.95))
  = exp(-2000 * 0.00808) ~ 9.5e-8.
* Histogram noise: 8,000 absolute noise draws of a discrete Laplace with known
  scale; the sample mean of |noise| is within 6 standard errors of its
  expectation except with probability ~2e-9 (normal approximation, n = 8,000).
"""

from __future__ import annotations

import math
import statistics
from decimal import Decimal

import polars as pl
import pytest

from jobs import DatasetHandle, PlanError, Schema
from jobs._compiler import bin_labels, evaluate, price, validate
from jobs._plan import Agg, Query, from_wire, to_wire

SCHEMA = Schema.from_dict(
    {
        "max_rows": 10_000,
        "columns": {
            "x": {"type": "float", "bounds": [0, 100]},
            "n": {"type": "int", "bounds": [1, 14]},
            "g": {"type": "category", "categories": ["a", "b", "c"]},
        },
    }
)
ROWS = 400


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> DatasetHandle:
    # Deterministic data (no randomness needed): a spread-out float and int column.
    xs = [(i * 37) % 101 for i in range(ROWS)]
    ns = [1 + (i * 5) % 14 for i in range(ROWS)]
    gs = ["a" if i % 3 else "b" for i in range(ROWS)]
    path = tmp_path_factory.mktemp("agg") / "data.parquet"
    pl.DataFrame({"x": [float(x) for x in xs], "n": ns, "g": gs}).write_parquet(path)
    return DatasetHandle("t", SCHEMA, path)


def truth(handle: DatasetHandle) -> pl.DataFrame:
    return pl.read_parquet(handle.path)


def record(*aggs: Agg) -> Query:
    return Query("t", (), (), aggs, "record")


@pytest.mark.slow
def test_variance_and_std_intervals_cover(handle: DatasetHandle) -> None:
    data = truth(handle)
    true_var = statistics.variance(data["x"].to_list())
    true_std = statistics.stdev(data["n"].to_list())
    priced = price(
        record(Agg("variance", "x", None, "v"), Agg("std", "n", None, "s")), handle, Decimal(2)
    )
    trials = 2000
    covered_v = covered_s = 0
    widths = []
    for _ in range(trials):
        out = evaluate(priced)
        lo, hi = out["v"]["ci95"]
        covered_v += lo <= true_var <= hi
        widths.append(hi - lo)
        lo, hi = out["s"]["ci95"]
        covered_s += lo <= true_std <= hi
        assert 0 <= out["v"]["value"] <= 50**2
        assert 0 <= out["s"]["value"] <= 6.5
    assert covered_v / trials >= 0.92
    assert covered_s / trials >= 0.92
    # Not trivially wide: the largest possible variance is 2,500.
    assert statistics.median(widths) < 2000


def test_variance_costs_what_was_asked_and_is_three_noisy_parts(handle: DatasetHandle) -> None:
    priced = price(record(Agg("variance", "x", None, "v")), handle, Decimal("0.6"))
    assert priced.measurement.map(1) <= 0.6
    assert priced.measurement.map(1) == pytest.approx(0.6, rel=1e-9)
    assert set(priced.part_accuracy) == {"v__sum", "v__len", "v__sq"}


@pytest.mark.slow
def test_histogram_bins_and_noise(handle: DatasetHandle) -> None:
    data = truth(handle)
    edges = (3, 7.5, 10)
    query = Query("t", (), ("n",), (Agg("count", None, None, "count"),), "table", bins=edges)
    priced = price(query, handle, Decimal(1))
    labels = bin_labels(edges)
    n = data["n"]
    true_counts = [
        int((n < 3).sum()),
        int(((n >= 3) & (n < 7.5)).sum()),
        int(((n >= 7.5) & (n < 10)).sum()),
        int((n >= 10).sum()),
    ]
    _dist, b, _half = priced.accuracy["count"]
    q = math.exp(-1 / b)
    expected_abs = 2 * q / (1 - q * q)
    expected_sq = 2 * q / (1 - q) ** 2  # E[X^2] of the two-sided geometric
    sd = math.sqrt(expected_sq - expected_abs**2)
    draws = []
    for _ in range(2000):
        rows = evaluate(priced)
        assert [r["n"] for r in rows] == labels
        draws += [abs(r["count"]["value"] - t) for r, t in zip(rows, true_counts, strict=True)]
    assert abs(statistics.fmean(draws) - expected_abs) <= 6 * sd / math.sqrt(len(draws))


def test_category_histogram_lists_every_declared_value(handle: DatasetHandle) -> None:
    query = Query("t", (), ("g",), (Agg("count", None, None, "count"),), "table")
    rows = evaluate(price(query, handle, Decimal(1)))
    assert [r["g"] for r in rows] == ["a", "b", "c"]  # "c" is absent: a noisy zero


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        (
            Query("t", (), ("g",), (Agg("count", None, None, "c"),), "table", bins=(1,)),
            "int and float",
        ),
        (Query("t", (), ("x",), (Agg("count", None, None, "c"),), "table"), "not public"),
        (record(Agg("variance", "g", None, "v")), "not numeric"),
        (record(Agg("std", "x", (0, 1000), "s")), "within"),
    ],
)
def test_invalid_histograms_and_spreads_are_plan_errors(query: Query, fragment: str) -> None:
    with pytest.raises(PlanError, match=fragment):
        validate(query, SCHEMA)


def test_bins_survive_the_wire_and_are_checked() -> None:
    query = Query("t", (), ("n",), (Agg("count", None, None, "count"),), "table", bins=(1, 2.5))
    assert from_wire(to_wire(query)) == query
    bad = to_wire(query) | {"bins": [3, 2]}
    with pytest.raises(PlanError, match="increasing"):
        from_wire(bad)
    with pytest.raises(PlanError, match="finite"):
        from_wire(to_wire(query) | {"bins": [1, float("nan")]})


def test_the_job_api_builds_histograms_and_spreads() -> None:
    from jobs._api import make_namespace

    seen = []

    def host(q: Query, _epsilon: object, _delta: object = None, _rho: object = None) -> object:
        seen.append(q)
        return [] if q.shape == "table" else {a.alias: {"value": 1, "ci95": [1, 1]} for a in q.aggs}

    ns = make_namespace(host, "t")
    ns["release"](ns["dataset"]().histogram("n", bins=[2, 5]), epsilon=1)
    ns["release"](ns["dataset"]().agg(ns["variance"]("x"), ns["std"]("x")), epsilon=1)
    assert seen[0].bins == (2, 5)
    assert seen[0].group_by == ("n",)
    assert [a.alias for a in seen[1].aggs] == ["variance_x", "std_x"]
    with pytest.raises(PlanError):
        ns["dataset"]().histogram("n", bins="2,5")


def test_narrow_int_columns_group_on_every_value_of_their_bounds(handle: DatasetHandle) -> None:
    query = Query("t", (), ("n",), (Agg("count", None, None, "count"),), "table")
    rows = evaluate(price(query, handle, Decimal(1)))
    assert [r["n"] for r in rows] == list(range(1, 15))


def test_sample_variance_at_the_bounds_is_covered(tmp_path) -> None:
    # Half the rows at each bound: the sample variance exceeds (hi - lo)^2 / 4.
    schema = Schema.from_dict({"columns": {"x": {"type": "float", "bounds": [0, 1]}}})
    path = tmp_path / "edges.parquet"
    pl.DataFrame({"x": [0.0] * 5 + [1.0] * 5}).write_parquet(path)
    truth_var = statistics.variance([0.0] * 5 + [1.0] * 5)
    assert truth_var > 0.25
    priced = price(
        record(Agg("variance", "x", None, "v")), DatasetHandle("t", schema, path), Decimal(1000)
    )
    covered = 0
    for _ in range(200):
        lo, hi = evaluate(priced)["v"]["ci95"]
        covered += lo <= truth_var <= hi
    assert covered >= 190


def test_bin_edges_equal_as_floats_are_refused_before_any_charge() -> None:
    query = to_wire(
        Query("t", (), ("n",), (Agg("count", None, None, "count"),), "table", bins=(1, 2))
    )
    with pytest.raises(PlanError, match="increasing"):
        from_wire(query | {"bins": [2**53, 2**53 + 1]})
