"""Tests of `jobs._compiler`: validation, pricing (cost fixed by the plan) and release.

The statistical tests never seed the noise. Each one states the probability
that it fails although the mechanism is exactly what `price` reports, and every
such probability is below 1e-6. The bounds are non-asymptotic Chernoff bounds
(no normal approximation):

* Mean absolute noise. For n iid copies of a variable Y >= 0 with log-moment
  generating function L, and a > E[Y], P(mean >= a) <= exp(-n * sup_{t>0}(t a - L(t)));
  for a < E[Y] the same with t < 0. For continuous Laplace(b), |noise| is
  Exponential(b) with L(t) = -log(1 - b t). For OpenDP's "Integer Laplace"
  (discrete Laplace, P(k) proportional to q^|k| with q = exp(-1/b)),
  L(t) = log((1-q)/(1+q)) + log(1 + q e^t) - log(1 - q e^t) and E|noise| = 2q/(1-q^2).
  `_relative_tolerance` finds the smallest delta with
  P(|mean|noise|/E|noise| - 1| > delta) <= 1e-6 and the test asserts that delta is
  small (< 0.2), so a wrong scale (x1.5, x3) cannot pass.
* Coverage of ci95. The number of covering intervals is Binomial(n, p), and
  P(p_hat <= lo) <= exp(-n KL(lo || p)) for lo < p, P(p_hat >= hi) <= exp(-n KL(hi || p))
  for hi > p (Chernoff-Hoeffding with the Bernoulli Kullback-Leibler divergence).
  For Laplace noise p = 0.95 exactly. For discrete Laplace the interval covers
  iff |noise| <= floor(half-width), so p = 1 - 2 q^(floor(h)+1) / (1+q): OpenDP's
  half-width h solves P(|noise| >= h) = 0.05 for the continuous extension of the
  tail, so the true coverage is a little above 0.95 (0.962 for the count at b = 2).
  Those tests check coverage in [0.93, 0.985] instead of [0.93, 0.97], and
  check separately (exactly, no randomness) that p lies in [0.95, 0.985].
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from jobs._compiler import PricedQuery, _released, evaluate, price, validate
from jobs._errors import EvaluationFailed, PlanError
from jobs._plan import Agg, BinOp, Col, IsIn, Lit, Query, UnaryOp
from jobs._schema import DatasetHandle, Schema

EPSILON = Decimal("0.5")
#: Public category order, deliberately neither alphabetical nor the data's order.
CATEGORIES = ("south", "north", "west", "east")
ABSENT = "west"  # declared but absent from the data
N_ROWS = 400
ROWS_PER_ID = 3
FAILURE_PROBABILITY = 1e-6

SCHEMA_TOML = """
description = "Compiler test stays"
max_rows = 1000
privacy_unit = {unit}

[columns.visitor]
type = "int"
bounds = [0, 100000]

[columns.region]
type = "category"
categories = ["south", "north", "west", "east"]

[columns.nights]
type = "int"
bounds = [0, 10]

[columns.spend]
type = "float"
bounds = [0, 100]

[columns.repeat]
type = "bool"
"""
ROW_UNIT = '"row"'
PERSON_UNIT = f'{{ column = "visitor", max_rows_per_person = {ROWS_PER_ID} }}'


def make_schema(unit: str = ROW_UNIT) -> Schema:
    return Schema.from_toml(SCHEMA_TOML.format(unit=unit))


def make_frame(n: int = N_ROWS, seed: int = 3) -> pl.DataFrame:
    """Fixed data (the seed only fixes the *data*, never the noise)."""
    rng = random.Random(seed)
    return pl.DataFrame(
        {
            "visitor": [i // ROWS_PER_ID for i in range(n)],
            "region": [rng.choice(["north", "north", "south", "east"]) for _ in range(n)],
            "nights": [rng.randint(0, 10) for _ in range(n)],
            "spend": [round(rng.uniform(0, 100), 2) for _ in range(n)],
            "repeat": [rng.random() < 0.3 for _ in range(n)],
        },
        schema={
            "visitor": pl.Int64,
            "region": pl.String,
            "nights": pl.Int64,
            "spend": pl.Float64,
            "repeat": pl.Boolean,
        },
    )


@dataclass(frozen=True)
class Data:
    frame: pl.DataFrame
    path: Path
    handle: DatasetHandle


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    frame = make_frame()
    assert ABSENT not in frame["region"].to_list()
    path = tmp_path_factory.mktemp("compiler") / "t.parquet"
    frame.write_parquet(path)
    return Data(frame, path, DatasetHandle("t", make_schema(), path))


def q_scalar(agg: Agg, *filters: Any) -> Query:
    return Query("t", tuple(filters), (), (agg,), "scalar")


def q_record(*aggs: Agg, filters: tuple[Any, ...] = ()) -> Query:
    return Query("t", filters, (), aggs, "record")


def q_table(group_by: tuple[str, ...], *aggs: Agg) -> Query:
    return Query("t", (), group_by, aggs, "table")


COUNT = Agg("count", None, None, "n")
SUM_INT = Agg("sum", "nights", None, "s")
SUM_FLOAT = Agg("sum", "spend", None, "f")
MEAN = Agg("mean", "spend", None, "m")
SUM_BOOL = Agg("sum", "repeat", None, "r")

PLANS = {
    "count": q_scalar(COUNT),
    "sum_int": q_scalar(SUM_INT),
    "sum_float": q_scalar(SUM_FLOAT),
    "mean": q_scalar(MEAN),
    "sum_narrowed": q_scalar(Agg("sum", "spend", (10.0, 20.0), "f")),
    "filtered_count": q_scalar(COUNT, BinOp("ge", Col("nights"), Lit(3))),
    "record": q_record(COUNT, SUM_INT, SUM_FLOAT, MEAN, SUM_BOOL),
    "group_by": q_table(("region",), COUNT, SUM_INT, MEAN),
    "group_by_two": q_table(("region", "repeat"), COUNT, SUM_FLOAT),
}


# --- statistics helpers ---------------------------------------------------------------


def _sup(f: Callable[[float], float], lo: float, hi: float) -> float:
    """Maximum of a concave function on [lo, hi] (ternary search)."""
    for _ in range(200):
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if f(m1) < f(m2):
            lo = m1
        else:
            hi = m2
    return f((lo + hi) / 2)


@dataclass(frozen=True)
class AbsNoise:
    """Law of |noise|: its mean and log-MGF, finite for t < t_max."""

    mean: float
    log_mgf: Callable[[float], float]
    t_max: float


def laplace_abs(b: float) -> AbsNoise:
    """|Laplace(b)| is Exponential(b)."""
    return AbsNoise(b, lambda t: -math.log1p(-b * t), 1 / b)


def discrete_laplace_abs(b: float) -> AbsNoise:
    """|X| for P(X = k) proportional to q^|k|, q = exp(-1/b)."""
    q = math.exp(-1 / b)
    c = math.log((1 - q) / (1 + q))
    return AbsNoise(
        2 * q / (1 - q * q),
        lambda t: c + math.log1p(q * math.exp(t)) - math.log1p(-q * math.exp(t)),
        1 / b,
    )


def _tail_bound(law: AbsNoise, n: int, delta: float) -> float:
    """Chernoff bound on P(|mean of n copies / E - 1| > delta)."""
    a_hi, a_lo = law.mean * (1 + delta), law.mean * (1 - delta)
    t_hi = law.t_max * (1 - 1e-12)
    up = _sup(lambda t: t * a_hi - law.log_mgf(t), 0.0, t_hi)
    down = _sup(lambda t: t * a_lo - law.log_mgf(t), -20 * law.t_max, 0.0)
    return math.exp(-n * up) + math.exp(-n * down)


def _relative_tolerance(law: AbsNoise, n: int) -> float:
    """Smallest delta (to 1e-6) whose two-sided Chernoff bound is <= FAILURE_PROBABILITY."""
    lo, hi = 0.0, 0.99
    assert _tail_bound(law, n, hi) <= FAILURE_PROBABILITY
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        if _tail_bound(law, n, mid) <= FAILURE_PROBABILITY:
            hi = mid
        else:
            lo = mid
    return hi


def assert_abs_noise_matches(noise: list[float], law: AbsNoise, max_delta: float = 0.2) -> None:
    """Mean |noise| equals E|noise| of the reported mechanism, within the 1e-6 tolerance.

    ``max_delta`` is a check of the test's design: with too few samples the
    tolerance would be too wide to catch a wrong scale.
    """
    n = len(noise)
    delta = _relative_tolerance(law, n)
    assert delta < max_delta, f"test design: {n} samples give a tolerance of {delta:.0%}"
    observed = statistics.fmean(abs(x) for x in noise)
    assert abs(observed / law.mean - 1) <= delta, (
        f"mean |noise| {observed:.4g} vs theoretical {law.mean:.4g} "
        f"(tolerance {delta:.1%}, false-failure probability < {FAILURE_PROBABILITY})"
    )


def _kl(a: float, p: float) -> float:
    """KL(Bernoulli(a) || Bernoulli(p))."""
    return a * math.log(a / p) + (1 - a) * math.log((1 - a) / (1 - p))


def coverage_failure_probability(p: float, n: int, lo: float, hi: float | None) -> float:
    """Chernoff-Hoeffding bound on P(coverage outside [lo, hi]) when the true coverage is p."""
    assert lo < p and (hi is None or p < hi)
    bound = math.exp(-n * _kl(lo, p))
    if hi is not None:
        bound += math.exp(-n * _kl(hi, p))
    return bound


def discrete_laplace_coverage(b: float, half: float) -> float:
    """P(|X| <= half) for discrete Laplace(b): exactly what [v - half, v + half] covers."""
    q = math.exp(-1 / b)
    return 1 - 2 * q ** (math.floor(half) + 1) / (1 + q)


def releases(priced: PricedQuery, n: int) -> list[Any]:
    return [evaluate(priced) for _ in range(n)]


def covered(release: dict[str, Any], truth: float) -> bool:
    lo, hi = release["ci95"]
    return bool(lo <= truth <= hi)


# --- cost is fixed by the plan ---------------------------------------------------------


@pytest.mark.parametrize("unit", [ROW_UNIT, PERSON_UNIT], ids=["row", "person"])
@pytest.mark.parametrize("epsilon", ["0.5", "0.1", "1.3", "3"])
@pytest.mark.parametrize("plan", list(PLANS), ids=list(PLANS))
def test_privacy_map_equals_requested_epsilon(plan: str, epsilon: str, unit: str) -> None:
    schema = make_schema(unit)
    # Pricing must not need the data: this path does not exist.
    handle = DatasetHandle("t", schema, Path("/nonexistent/never/t.parquet"))
    eps = Decimal(epsilon)
    priced = price(PLANS[plan], handle, eps)
    spent = priced.measurement.map(priced.d_in)
    assert float(spent) <= float(eps)
    assert Decimal(float(spent)) <= eps  # the decimal the ledger charges covers the loss
    assert float(spent) == pytest.approx(float(eps), rel=1e-9)
    assert priced.epsilon == eps


def test_pricing_never_reads_data(
    data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = PLANS["record"]
    other = make_frame(37, seed=11)
    other_path = tmp_path / "other.parquet"
    other.write_parquet(other_path)
    a = price(query, data.handle, EPSILON)
    b = price(query, DatasetHandle("t", data.handle.schema, other_path), EPSILON)
    # Same plan and schema, different data: same noise and same accuracy.
    assert a.global_scale == b.global_scale
    assert a.accuracy == b.accuracy

    def no_reading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("price() read the data")

    for name in ("scan_parquet", "read_parquet", "scan_csv", "read_csv"):
        monkeypatch.setattr(pl, name, no_reading)
    c = price(query, data.handle, EPSILON)
    assert c.global_scale == a.global_scale


@pytest.mark.parametrize(
    ("agg", "sensitivity"),
    [(COUNT, 1), (SUM_INT, 10), (SUM_FLOAT, 100), (Agg("sum", "spend", (10.0, 20.0), "f"), 20)],
    ids=["count", "sum_int", "sum_float", "sum_narrowed"],
)
def test_noise_scale_is_sensitivity_over_epsilon(agg: Agg, sensitivity: float) -> None:
    handle = DatasetHandle("t", make_schema(), Path("/nonexistent"))
    priced = price(q_scalar(agg), handle, EPSILON)
    _dist, scale, _half = priced.accuracy[agg.alias]
    # Float sums add a tiny term for float rounding (it depends on max_rows).
    assert scale == pytest.approx(sensitivity / float(EPSILON), rel=1e-6)
    assert scale >= sensitivity / float(EPSILON)


@pytest.mark.parametrize("plan", ["count", "sum_int", "sum_float", "mean", "record", "group_by"])
def test_person_privacy_unit_triples_the_noise(plan: str) -> None:
    nowhere = Path("/nonexistent")
    rows = price(PLANS[plan], DatasetHandle("t", make_schema(ROW_UNIT), nowhere), EPSILON)
    people = price(PLANS[plan], DatasetHandle("t", make_schema(PERSON_UNIT), nowhere), EPSILON)
    assert make_schema(PERSON_UNIT).privacy_unit.d_in == ROWS_PER_ID
    assert people.global_scale == pytest.approx(ROWS_PER_ID * rows.global_scale, rel=1e-6)
    assert rows.accuracy.keys() == people.accuracy.keys()
    for alias, (dist, scale, _half) in rows.accuracy.items():
        assert people.accuracy[alias][0] == dist
        assert people.accuracy[alias][1] == pytest.approx(ROWS_PER_ID * scale, rel=1e-6)


@pytest.mark.slow
def test_person_privacy_unit_noise_is_three_times_larger(data: Data) -> None:
    """The released noise itself (not just the reported scale) triples."""
    handle = DatasetHandle("t", make_schema(PERSON_UNIT), data.path)
    priced = price(PLANS["count"], handle, EPSILON)
    b = ROWS_PER_ID * 1 / float(EPSILON)
    assert priced.accuracy["n"][1] == pytest.approx(b, rel=1e-9)
    noise = [r["value"] - N_ROWS for r in releases(priced, 1000)]
    assert_abs_noise_matches(noise, discrete_laplace_abs(b))


# --- statistical tests of the released values ------------------------------------------


def _check_discrete(priced: PricedQuery, alias: str, truth: float, n: int) -> None:
    dist, b, half = priced.accuracy[alias]
    assert dist == "Integer Laplace"
    got = releases(priced, n)
    assert all(isinstance(r["value"], int) for r in got)
    assert all(r["noise_scale"] == b for r in got)
    # (a) spread
    assert_abs_noise_matches([r["value"] - truth for r in got], discrete_laplace_abs(b))
    # (b) coverage: exact coverage of the discrete interval, then the empirical one.
    p = discrete_laplace_coverage(b, half)
    assert 0.95 <= p <= 0.985, f"ci95 of Integer Laplace({b}) covers with probability {p}"
    assert coverage_failure_probability(p, n, 0.93, 0.985) < FAILURE_PROBABILITY
    rate = statistics.fmean(covered(r, truth) for r in got)
    assert 0.93 <= rate <= 0.985, f"ci95 coverage {rate} over {n} releases (exact: {p:.4f})"


@pytest.mark.slow
def test_count_noise_and_coverage(data: Data) -> None:
    priced = price(PLANS["count"], data.handle, EPSILON)
    assert priced.accuracy["n"][1] == pytest.approx(1 / float(EPSILON), rel=1e-9)
    truth = data.frame.height
    # True count 400 against scale 2: the unsigned count never saturates at 0.
    _check_discrete(priced, "n", truth, 2000)


@pytest.mark.slow
def test_int_sum_noise_and_coverage(data: Data) -> None:
    priced = price(PLANS["sum_int"], data.handle, EPSILON)
    assert priced.accuracy["s"][1] == pytest.approx(10 / float(EPSILON), rel=1e-9)
    truth = data.frame["nights"].sum()
    # The exact coverage here is 0.9515, 0.0215 above 0.93: 4000 releases are needed
    # for a KL bound below 1e-6 (asserted in _check_discrete).
    _check_discrete(priced, "s", truth, 4000)


@pytest.mark.slow
def test_float_sum_noise_and_coverage(data: Data) -> None:
    priced = price(PLANS["sum_float"], data.handle, EPSILON)
    dist, b, half = priced.accuracy["f"]
    assert dist == "Float Laplace"
    assert b == pytest.approx(100 / float(EPSILON), rel=1e-6)
    assert half == pytest.approx(b * math.log(20), rel=1e-9)  # P(|Laplace(b)| > h) = 0.05
    truth = data.frame["spend"].sum()
    n = 4000
    got = releases(priced, n)
    assert all(isinstance(r["value"], float) for r in got)
    assert_abs_noise_matches([r["value"] - truth for r in got], laplace_abs(b))
    # Continuous noise: coverage is exactly 0.95. KL bounds: exp(-4000 KL(0.93||0.95))
    # = 2.9e-7 and exp(-4000 KL(0.97||0.95)) = 3.3e-9.
    assert coverage_failure_probability(0.95, n, 0.93, 0.97) < FAILURE_PROBABILITY
    rate = statistics.fmean(covered(r, truth) for r in got)
    assert 0.93 <= rate <= 0.97, f"ci95 coverage {rate} over {n} releases"


@pytest.mark.slow
def test_mean_noise_and_coverage(data: Data) -> None:
    priced = price(PLANS["mean"], data.handle, EPSILON)
    _d, b_sum, _h = priced.accuracy["m__sum"]
    _d, b_len, _h = priced.accuracy["m__len"]
    # The mean spends ε/2 on the sum and ε/2 on the count.
    assert b_sum == pytest.approx(100 / (float(EPSILON) / 2), rel=1e-6)
    assert b_len == pytest.approx(1 / (float(EPSILON) / 2), rel=1e-6)
    total, rows = data.frame["spend"].sum(), data.frame.height
    truth = total / rows

    # (a) spread of the measurement's two parts (the very measurement evaluate runs).
    n_raw = 2000
    parts = [
        priced.measurement(pl.scan_parquet(data.path)).collect().row(0, named=True)
        for _ in range(n_raw)
    ]
    assert_abs_noise_matches([p["m__sum"] - total for p in parts], laplace_abs(b_sum))
    assert_abs_noise_matches([p["m__len"] - rows for p in parts], discrete_laplace_abs(b_len))

    # (b) coverage. The interval is built from two 97.5% boxes (union bound), so its
    # coverage p is at least 0.95 (more: the box corners are conservative). For
    # p >= 0.95, P(coverage < 0.92) <= exp(-2000 KL(0.92 || 0.95)) = 9.6e-8.
    n = 2000
    assert coverage_failure_probability(0.95, n, 0.92, None) < FAILURE_PROBABILITY
    got = releases(priced, n)
    lo, hi = 0.0, 100.0
    assert all(lo <= r["value"] <= hi and lo <= r["ci95"][0] <= r["ci95"][1] <= hi for r in got)
    # Not vacuous: the intervals are much narrower than the public bounds.
    assert statistics.median(r["ci95"][1] - r["ci95"][0] for r in got) < (hi - lo) / 4
    rate = statistics.fmean(covered(r, truth) for r in got)
    assert rate >= 0.92, f"mean ci95 coverage {rate} over {n} releases"


# --- grouped releases ------------------------------------------------------------------


@pytest.mark.slow
def test_group_by_lists_every_public_key_in_order(data: Data) -> None:
    priced = price(PLANS["group_by"], data.handle, EPSILON)
    truth = data.frame.group_by("region").len()
    present = dict(truth.iter_rows())
    assert set(present) == set(CATEGORIES) - {ABSENT}
    absent_counts, absent_sums = [], []
    for table in releases(priced, 300):
        assert [row["region"] for row in table] == list(CATEGORIES)
        assert all(set(row) == {"region", "n", "s", "m"} for row in table)
        west = table[CATEGORIES.index(ABSENT)]
        absent_counts.append(west["n"]["value"])
        absent_sums.append(west["s"]["value"])
        assert west["n"]["value"] >= 0  # unsigned count: a noisy zero saturates at 0
        assert west["n"]["ci95"][0] >= 0
    # A noisy zero, not a constant: the count varies and the sum is pure noise around 0.
    assert len(set(absent_counts)) > 1
    b_sum = priced.accuracy["s"][1]
    assert b_sum == pytest.approx(10 / (float(EPSILON) / 4), rel=1e-6)  # ε split 4 ways
    # 300 samples: tolerance 33% at false-failure probability 1e-6. Enough to tell a
    # noisy zero from a leaked or doubled value.
    assert_abs_noise_matches(absent_sums, discrete_laplace_abs(b_sum), max_delta=0.35)


def test_group_by_two_keys_follows_public_product_order(data: Data) -> None:
    table = evaluate(price(PLANS["group_by_two"], data.handle, EPSILON))
    keys = [(row["region"], row["repeat"]) for row in table]
    assert keys == list(itertools.product(CATEGORIES, (False, True)))
    assert all(isinstance(row["repeat"], bool) for row in table)


# --- empty results ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        BinOp("gt", Col("nights"), Lit(10)),
        BinOp("eq", Col("region"), Lit(ABSENT)),
        Lit(False),
        BinOp("and", Col("repeat"), UnaryOp("not", Col("repeat"))),
    ],
    ids=["above_bounds", "absent_category", "false", "contradiction"],
)
def test_filter_matching_no_row_gives_a_noisy_answer(data: Data, condition: Any) -> None:
    query = q_record(COUNT, SUM_INT, SUM_FLOAT, MEAN, filters=(condition,))
    priced = price(query, data.handle, EPSILON)
    for _ in range(5):
        release = evaluate(priced)
        assert set(release) == {"n", "s", "f", "m"}
        for value in release.values():
            lo, hi = value["ci95"]
            assert math.isfinite(value["value"])
            assert lo <= value["value"] <= hi
        assert release["n"]["value"] >= 0
        assert 0.0 <= release["m"]["value"] <= 100.0
    scalar = price(q_scalar(SUM_FLOAT, condition), data.handle, EPSILON)
    assert len({evaluate(scalar)["value"] for _ in range(5)}) > 1  # noise, not a constant 0


@pytest.mark.parametrize("side", [-1, 1])
def test_a_mean_whose_noisy_sum_lands_far_outside_keeps_its_value_in_its_interval(
    data: Data, side: int
) -> None:
    """A noisy sum beyond its own 95% half-width past a bound (1.25% of releases when
    the true mean sits at that bound) put every corner beyond the bound: the interval
    is then the bound itself, never one with lo > hi that misses the value."""
    priced = price(q_scalar(MEAN), data.handle, EPSILON)
    a_sum, a_len = priced.part_accuracy["m__sum"], priced.part_accuracy["m__len"]
    lo_bound, hi_bound = data.handle.schema.column("spend").bounds or (0, 0)
    total = -a_sum - 10.0 if side < 0 else hi_bound * (400 + a_len) + a_sum + 10.0
    row = {"m__sum": total, "m__len": 400}
    out = _released(MEAN, row, priced, data.handle.schema.column("spend"))
    lo, hi = out["ci95"]
    assert lo <= out["value"] <= hi
    assert out["value"] == lo == hi == (lo_bound if side < 0 else hi_bound)


# --- validation errors -----------------------------------------------------------------

SCHEMA = make_schema(PERSON_UNIT)

INVALID = {
    "unknown_agg_column": (
        q_scalar(Agg("sum", "price", None, "x")),
        r"no column 'price'; columns are: visitor, region, nights, spend, repeat",
    ),
    "unknown_filter_column": (
        q_scalar(COUNT, BinOp("gt", Col("age"), Lit(3))),
        r"no column 'age'; columns are: visitor, region, nights, spend, repeat",
    ),
    "unknown_group_column": (
        q_table(("country",), COUNT),
        r"no column 'country'; columns are: visitor, region, nights, spend, repeat",
    ),
    "sum_of_category": (
        q_scalar(Agg("sum", "region", None, "x")),
        r"sum\('region'\): column is category, not numeric",
    ),
    "mean_of_category": (
        q_scalar(Agg("mean", "region", None, "x")),
        r"mean\('region'\): column is category, not numeric",
    ),
    "group_by_float": (
        q_table(("spend",), COUNT),
        r"cannot group by 'spend': its keys are not public",
    ),
    "bounds_wider_high": (
        q_scalar(Agg("sum", "nights", (0, 11), "x")),
        r"sum\('nights'\): bounds \(0, 11\) must lie within the column's public bounds \(0, 10\)",
    ),
    "bounds_wider_low": (
        q_scalar(Agg("mean", "spend", (-1.0, 50.0), "x")),
        r"mean\('spend'\): bounds \(-1.0, 50.0\) must lie within .* \(0.0, 100.0\)",
    ),
    "fractional_bounds_int": (
        q_scalar(Agg("sum", "nights", (0.5, 9), "x")),
        r"sum\('nights'\): bounds of an integer column must be integers",
    ),
    "fractional_bounds_bool": (
        q_scalar(Agg("sum", "repeat", (0, 0.5), "x")),
        r"sum\('repeat'\): bounds of an integer column must be integers",
    ),
    "filter_is_number": (q_scalar(COUNT, Col("nights")), r"filter\(\.\.\.\) needs a condition"),
    "filter_is_arithmetic": (
        q_scalar(COUNT, BinOp("add", Col("nights"), Lit(1))),
        r"filter\(\.\.\.\) needs a condition",
    ),
    "filter_is_text": (q_scalar(COUNT, Col("region")), r"filter\(\.\.\.\) needs a condition"),
    "number_vs_text": (
        q_scalar(COUNT, BinOp("eq", Col("nights"), Lit("ten"))),
        r"cannot compare number with text",
    ),
    "text_vs_number": (
        q_scalar(COUNT, BinOp("lt", Col("region"), Col("spend"))),
        r"cannot compare text with number",
    ),
    "is_in_mixed": (
        q_scalar(COUNT, IsIn(Col("nights"), (1, "two"))),
        r"is_in on a number expression needs number values",
    ),
    "compare_with_none": (
        q_scalar(COUNT, BinOp("eq", Col("nights"), Lit(None))),
        r"use \.is_null\(\)",
    ),
    "sum_of_identifier": (
        q_scalar(Agg("sum", "visitor", None, "x")),
        r"'visitor' identifies people \(the privacy unit\)",
    ),
    "mean_of_identifier": (
        q_scalar(Agg("mean", "visitor", None, "x")),
        r"'visitor' identifies people \(the privacy unit\)",
    ),
    "bad_alias": (
        q_scalar(Agg("count", None, None, "not an identifier")),
        r"must be a valid identifier",
    ),
}


@pytest.mark.parametrize(("query", "message"), list(INVALID.values()), ids=list(INVALID))
def test_validate_errors_are_specific(query: Query, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        validate(query, SCHEMA)
    with pytest.raises(PlanError, match=message):  # price validates before building
        price(query, DatasetHandle("t", SCHEMA, Path("/nonexistent")), EPSILON)


def test_identifier_may_be_aggregated_when_rows_are_the_unit() -> None:
    validate(q_scalar(Agg("sum", "visitor", None, "x")), make_schema(ROW_UNIT))


def test_valid_plans_pass_validation() -> None:
    for query in PLANS.values():
        validate(query, SCHEMA)
    validate(q_scalar(COUNT, BinOp("eq", Col("region"), Lit("north"))), SCHEMA)
    validate(q_scalar(COUNT, BinOp("eq", Col("repeat"), Lit(True))), SCHEMA)
    validate(q_scalar(Agg("sum", "nights", (2.0, 5.0), "x")), SCHEMA)


def test_internal_names_of_a_mean_cannot_collide_with_an_alias(data: Data) -> None:
    """A mean named "m" computes hidden columns "m__sum" and "m__len".

    An alias colliding with them must be refused before pricing (so before any
    charge): the collision depends only on the plan, so it is a PlanError.
    """
    query = q_record(Agg("sum", "spend", None, "m__sum"), MEAN)
    with pytest.raises(PlanError):
        validate(query, data.handle.schema)
    with pytest.raises(PlanError):
        price(query, data.handle, EPSILON)


# --- evaluation failures ---------------------------------------------------------------

SECRET = "SECRET-VALUE-8472"


def _bad_files(folder: Path) -> dict[str, Path]:
    garbage = folder / "garbage_7f3a.parquet"
    garbage.write_bytes(f"PAR1 {SECRET} north 12.5 not parquet".encode())
    wrong = folder / "wrongtype_7f3a.parquet"
    # A parquet file whose nights column holds text: evaluation fails inside Polars.
    make_frame(10).with_columns(pl.lit(SECRET).alias("nights")).write_parquet(wrong)
    missing_column = folder / "nocol_7f3a.parquet"
    make_frame(10).drop("spend").with_columns(pl.lit(SECRET).alias("extra")).write_parquet(
        missing_column
    )
    return {
        "missing": folder / "missing_7f3a.parquet",
        "garbage": garbage,
        "wrong_type": wrong,
        "missing_column": missing_column,
    }


@pytest.mark.parametrize("kind", ["missing", "garbage", "wrong_type", "missing_column"])
def test_evaluate_failure_is_generic(tmp_path: Path, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    handle = DatasetHandle("t", make_schema(), path)
    priced = price(q_record(COUNT, SUM_INT, SUM_FLOAT), handle, EPSILON)
    with pytest.raises(EvaluationFailed) as caught:
        evaluate(priced)
    message = str(caught.value)
    assert message == str(EvaluationFailed())
    for leak in (SECRET, str(path), path.name, "7f3a", str(tmp_path), "12.5"):
        assert leak not in message
    # Raised "from None": the traceback does not chain the real (data-quoting) error.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
