"""Zero-concentrated DP datasets: budgets in ρ, Gaussian noise calibrated as sqrt(ρ₁/ρ),
private group keys thresholded at (ρ, δ), and ρ shown as (ε, δ) by OpenDP's conversion.
No seeding: the noise is OpenDP's.

Failure probabilities (the statistical tests are marked slow; the others are exact):

* Noise scale (count and float sum): N = 4,000 noise draws of each, from 1,000
  releases of a record of 4 counts and 4 float sums (OpenDP draws the noise of each
  aggregate independently). The noise X of a released value is (discrete) Gaussian with the reported scale sigma, and the test statistic is
  R = mean(X²)/sigma², required in [1 - 0.13, 1 + 0.13] (the empirical standard deviation
  within about 6.5% of sigma). N·R is χ²_N for continuous Gaussian noise, and by Chernoff,
  P(R >= 1 + d) <= exp(-N/2·(d - ln(1 + d))) = exp(-15.56) ~ 1.8e-7 and
  P(R <= 1 - d) <= exp(-N/2·(-d - ln(1 - d))) = exp(-18.52) ~ 9.1e-9. For the
  discrete Gaussian (integer counts; OpenDP's float noise is one on a fine lattice),
  Poisson summation gives E[exp(tX²)] <= its continuous value for t > 0, and within a
  factor 1 + 2·exp(-2π²·sigma²/(1 - 2t·sigma²)) (negligible at sigma ~ 70) for t < 0, so the same
  bounds hold. Both quantities together: < 4e-7.
* Interval coverage (the same N = 4,000 values of each): each ci95 covers the truth with
  an exact probability p computed in the test: 0.95 for the float sum, 0.9531 for the
  integer count (its half-width is rounded up to an integer). By Chernoff-Hoeffding,
  P(coverage > 0.97) <= exp(-N·KL(0.97 || p)) and P(coverage < 0.93) <=
  exp(-N·KL(0.93 || p)): 3.3e-9 and 2.9e-7 for the sum, 4.5e-7 and 9.1e-10 for the
  count, 7.4e-7 in all. The test recomputes this total from the exact p and asserts
  it is below 1e-6.
* Both noise tests also check that the mean noise is within 6 standard errors of 0
  (P ~ 2e-9 each, normal approximation at N = 4,000).
* Private keys (N = 1,000 releases at δ = 1e-7): a key held by one person appears in
  a release with probability <= δ (on the neighbouring dataset without that person it
  never appears, so approximate zCDP can only allow it inside the δ event). With
  λ = N·δ = 1e-4, P(appears twice or more) <= λ²/2 = 5e-9. Keys held by ~200 rows
  sit >= 15 standard deviations above the threshold: never missed in practice
  (P < 1e-40 per release).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import opendp.prelude as dp
import polars as pl
import pytest

from jobs import DatasetHandle, PlanError, Schema, SchemaError, conform
from jobs._compiler import evaluate, placeholder, price, zcdp_epsilon
from jobs._plan import Agg, Query

COLUMNS: dict[str, Any] = {
    "person": {"type": "string"},
    "x": {"type": "float", "bounds": [0, 100]},
    "n": {"type": "int", "bounds": [1, 14]},
    "g": {"type": "category", "categories": ["a", "b", "c"]},
    "city": {"type": "string"},
}
ZCDP = Schema.from_dict(
    {
        "max_rows": 10_000,
        "privacy_definition": "zcdp",
        "equivalent_delta": 1e-7,
        "columns": COLUMNS,
    }
)
#: The same dataset with a person identifier: up to 3 rows per person (d_in = 3).
ZCDP_PEOPLE = Schema.from_dict(
    {
        "max_rows": 10_000,
        "privacy_definition": "zcdp",
        "equivalent_delta": 1e-7,
        "privacy_unit": {"column": "person", "max_rows_per_person": 3},
        "columns": COLUMNS,
    }
)
PURE = Schema.from_dict({"max_rows": 10_000, "columns": COLUMNS})
SCHEMAS = {"row": ZCDP, "person": ZCDP_PEOPLE}

#: 133 people with 3 rows each, then one more person whose 3 rows are the only
#: ones in city "hamlet". Category "c" is declared but absent.
ROWS = 402
RHO = Decimal("0.05")
COUNT = Agg("count", None, None, "c")


def frame(extra_person: bool = False) -> pl.DataFrame:
    """The test rows; ``extra_person`` adds one person with 3 rows (a neighbour)."""
    rows = [
        {
            "person": f"p{i // 3}",
            "x": float((i * 37) % 101),
            "n": 1 + (i * 5) % 14,
            "g": "a" if i % 3 else "b",
            "city": ("paris" if i % 2 else "lyon") if i < 399 else "hamlet",
        }
        for i in range(ROWS)
    ]
    if extra_person:
        rows += [{"person": "new", "x": 100.0, "n": 14, "g": "a", "city": "paris"}] * 3
    return pl.DataFrame(rows)


def write(folder: Path, data: pl.DataFrame) -> Path:
    path = folder / "data.parquet"
    for schema in (ZCDP, ZCDP_PEOPLE):
        conform(data, schema)  # the data obey the schema's claims
    assert data.group_by("person").len()["len"].max() == 3  # as registration ensures
    data.write_parquet(path)
    return path


def unit_distance(schema: Schema) -> Any:
    """One privacy unit in OpenDP's terms: a row, or at most k rows of one person."""
    unit = schema.privacy_unit
    if unit.identifier is None:
        return 1
    return [dp.polars.Bound(by=[], per_group=unit.max_rows_per_person)]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("zcdp"), frame())


@pytest.fixture(scope="module")
def neighbour_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("zcdp_neighbour"), frame(extra_person=True))


def handle(schema: Schema, path: Path) -> DatasetHandle:
    return DatasetHandle("t", schema, path)


def scalar(agg: Agg) -> Query:
    return Query("t", (), (), (agg,), "scalar")


QUERIES: dict[str, Query] = {
    "count": scalar(COUNT),
    "sum_int": scalar(Agg("sum", "n", None, "s")),
    "sum_float": scalar(Agg("sum", "x", None, "s")),
    "mean": scalar(Agg("mean", "x", None, "m")),
    "variance": scalar(Agg("variance", "x", None, "v")),
    "histogram": Query("t", (), ("n",), (COUNT,), "table", bins=(3, 7.5, 10)),
    "grouped_sum": Query("t", (), ("g",), (COUNT, Agg("sum", "x", None, "s")), "table"),
    "quantile": scalar(Agg("quantile", "x", None, "q", q=0.5)),
    "record": Query(
        "t", (), (), (COUNT, Agg("sum", "n", (2, 10), "s"), Agg("std", "n", None, "sd")), "record"
    ),
}


def released(out: Any, query: Query) -> Iterator[tuple[Any, str, dict[str, Any]]]:
    """(group key, alias, released value) for every value of a release."""
    if query.shape == "scalar":
        yield (), query.aggs[0].alias, out
    elif query.shape == "record":
        for a in query.aggs:
            yield (), a.alias, out[a.alias]
    else:
        for row in out:
            key = tuple(row[g] for g in query.group_by)
            for a in query.aggs:
                yield key, a.alias, row[a.alias]


def count_scale(priced: Any) -> float:
    return float(priced.accuracy["c"][1])


# --- 1. calibration -------------------------------------------------------------------


@pytest.mark.parametrize("unit", list(SCHEMAS))
@pytest.mark.parametrize("name", list(QUERIES))
def test_measurement_costs_exactly_the_requested_rho(unit: str, name: str, data_path: Path) -> None:
    schema = SCHEMAS[unit]
    priced = price(QUERIES[name], handle(schema, data_path), RHO)
    spent = priced.measurement.map(unit_distance(schema))
    assert isinstance(spent, float)  # a ρ, not an (ε, δ) pair
    assert Decimal(spent) <= RHO  # exact comparison: the float never exceeds the charge
    assert spent >= 0.999999 * float(RHO)
    assert priced.rho == RHO
    assert priced.epsilon == 0
    assert priced.delta == 0
    assert priced.threshold is None
    assert "ZeroConcentratedDivergence" in str(priced.measurement.output_measure)
    for alias, (distribution, scale, half) in priced.accuracy.items():
        assert scale > 0 and half > 0
        assert "Laplace" not in distribution
        if alias == "q":
            # The exponential mechanism as Gumbel report-noisy-max (pure DP would be
            # permute-and-flip, "ExponentialMin").
            assert distribution == "GumbelMin"
        else:
            assert distribution in ("Integer Gaussian", "Float Gaussian")


@pytest.mark.parametrize("unit", list(SCHEMAS))
def test_gaussian_scale_is_sensitivity_over_sqrt_two_rho(unit: str, data_path: Path) -> None:
    # The Gaussian mechanism with L2 sensitivity Δ and scale sigma is (Δ²/(2·sigma²))-zCDP.
    schema = SCHEMAS[unit]
    d_in = schema.privacy_unit.max_rows_per_person
    record = Query(
        "t", (), (), (COUNT, Agg("sum", "n", None, "sn"), Agg("sum", "x", None, "sx")), "record"
    )
    priced = price(record, handle(schema, data_path), RHO)
    # Three Gaussian releases of scale s·Δᵢ each cost d_in²/2s², composed: 3·d_in²/2s² = ρ.
    # (OpenDP's allowance for float rounding in the sum, ~1e-8 relative, shifts this a little.)
    sigma = math.sqrt(3 / (2 * float(RHO)))
    for alias, mechanism, sensitivity in (
        ("c", "Integer Gaussian", 1),
        ("sn", "Integer Gaussian", 14),
        ("sx", "Float Gaussian", 100),
    ):
        distribution, scale, _half = priced.accuracy[alias]
        assert distribution == mechanism
        assert scale == pytest.approx(sensitivity * d_in * sigma, rel=1e-6), alias
    assert priced.accuracy["sx"][1] >= 100 * d_in * sigma * (1 - 1e-12)


@pytest.mark.parametrize("unit", list(SCHEMAS))
@pytest.mark.parametrize("name", list(QUERIES))
def test_placeholder_announces_the_noise_of_the_release(
    unit: str, name: str, data_path: Path
) -> None:
    query = QUERIES[name]
    priced = price(query, handle(SCHEMAS[unit], data_path), RHO)
    real = list(released(evaluate(priced), query))
    fake = list(released(placeholder(priced), query))
    assert [(k, a) for k, a, _ in fake] == [(k, a) for k, a, _ in real]
    for (_k, alias, r), (_k2, _a, f) in zip(real, fake, strict=True):
        assert f["placeholder"] is True
        assert f["noise_scale"] == r["noise_scale"], alias
        assert f["aggregate"] == r["aggregate"]
        if r["aggregate"] == "quantile":
            assert f["rank_error"] == r["rank_error"]
        assert f["mechanism"] == r["mechanism"], alias
        assert "Gaussian" in r["mechanism"] or r["aggregate"] == "quantile"


# --- 2. noise statistics --------------------------------------------------------------

#: Each release holds COPIES counts and COPIES float sums, whose noises OpenDP draws
#: independently: N_DRAWS noise draws of each kind.
COPIES = 4
N_RELEASES = 1_000
N_DRAWS = COPIES * N_RELEASES
#: The 8 aggregates share ρ: the count's sigma = sqrt(8/(2ρ)) ~ 70.7, so the integer
#: rounding of its interval is small.
NOISE_RHO = Decimal("0.0008")
TOLERANCE = 0.13


def kl(a: float, p: float) -> float:
    """KL(Bernoulli(a) || Bernoulli(p))."""
    return a * math.log(a / p) + (1 - a) * math.log((1 - a) / (1 - p))


def discrete_gaussian_pmf(sigma: float) -> dict[int, float]:
    """P(X = x) ∝ exp(-x²/(2·sigma²)) over the integers (truncated at 40·sigma: mass < e^-800)."""
    width = math.ceil(40 * sigma)
    weights = {x: math.exp(-(x * x) / (2 * sigma * sigma)) for x in range(-width, width + 1)}
    total = math.fsum(weights.values())
    return {x: w / total for x, w in weights.items()}


@dataclass
class Draws:
    """Released values of one kind of aggregate, with what the pricing announced."""

    truth: float
    mechanism: str
    sigma: float
    half: float
    values: list[dict[str, Any]]


@pytest.fixture(scope="module")
def noise_draws(data_path: Path) -> dict[str, Draws]:
    """N_DRAWS released counts and float sums (N_RELEASES releases of a record)."""
    counts = [Agg("count", None, None, f"c{i}") for i in range(COPIES)]
    sums = [Agg("sum", "x", None, f"s{i}") for i in range(COPIES)]
    query = Query("t", (), (), (*counts, *sums), "record")
    priced = price(query, handle(ZCDP, data_path), NOISE_RHO)
    releases = [evaluate(priced) for _ in range(N_RELEASES)]
    truth = frame()
    out = {}
    for kind, aggs, true in (
        ("count", counts, truth.height),
        ("sum", sums, math.fsum(truth["x"].to_list())),
    ):
        [(mechanism, sigma, half)] = {priced.accuracy[a.alias] for a in aggs}
        values = [r[a.alias] for r in releases for a in aggs]
        out[kind] = Draws(true, mechanism, sigma, half, values)
    return out


@pytest.mark.slow
def test_noise_is_gaussian_with_the_reported_scale(noise_draws: dict[str, Draws]) -> None:
    n, d = N_DRAWS, TOLERANCE
    upper = math.exp(-n / 2 * (d - math.log1p(d)))
    lower = math.exp(-n / 2 * (-d - math.log1p(-d)))
    assert 2 * (upper + lower) < 4e-7  # the failure probability stated above
    for kind, mechanism in (("count", "Integer Gaussian"), ("sum", "Float Gaussian")):
        draws = noise_draws[kind]
        assert draws.mechanism == mechanism
        assert {v["mechanism"] for v in draws.values} == {mechanism}
        assert {v["noise_scale"] for v in draws.values} == {draws.sigma}
        noise = [v["value"] - draws.truth for v in draws.values]
        assert len(noise) == n
        if kind == "count":
            assert all(isinstance(x, int) for x in noise)
        ratio = math.fsum(x * x for x in noise) / n / draws.sigma**2
        assert 1 - d <= ratio <= 1 + d, (kind, math.sqrt(ratio))
        # Centred: within 6 standard errors (P ~ 2e-9).
        assert abs(statistics.fmean(noise)) <= 6 * draws.sigma / math.sqrt(n)


@pytest.mark.slow
def test_ci95_covers_about_95_percent(noise_draws: dict[str, Draws]) -> None:
    failure = 0.0
    for kind in ("count", "sum"):
        draws = noise_draws[kind]
        if draws.mechanism == "Integer Gaussian":
            pmf = discrete_gaussian_pmf(draws.sigma)
            p = math.fsum(w for x, w in pmf.items() if abs(x) <= draws.half)
        else:
            p = statistics.NormalDist(0, draws.sigma).cdf(draws.half) * 2 - 1
        # Calibrated, not merely conservative.
        assert 0.95 - 1e-9 <= p <= 0.956, (kind, p)
        failure += math.exp(-N_DRAWS * kl(0.97, p)) + math.exp(-N_DRAWS * kl(0.93, p))
        covered = 0
        for v in draws.values:
            lo, hi = v["ci95"]
            assert hi - lo <= 2 * draws.half + 1e-9
            covered += lo <= draws.truth <= hi
        assert 0.93 <= covered / N_DRAWS <= 0.97, (kind, covered / N_DRAWS)
    assert failure < 1e-6


# --- 3. the scale relation ------------------------------------------------------------


@pytest.mark.parametrize("name", ["count", "sum_float", "grouped_sum", "quantile", "variance"])
def test_doubling_rho_divides_the_scale_by_sqrt_two(name: str, data_path: Path) -> None:
    query = QUERIES[name]
    z, pure = handle(ZCDP, data_path), handle(PURE, data_path)
    base = price(query, z, RHO)
    double = price(query, z, 2 * RHO)
    quadruple = price(query, z, 4 * RHO)
    assert double.global_scale == pytest.approx(base.global_scale / math.sqrt(2), rel=1e-6)
    assert quadruple.global_scale == pytest.approx(base.global_scale / 2, rel=1e-6)
    for alias, (_d, scale, _h) in base.accuracy.items():
        assert double.accuracy[alias][1] == pytest.approx(scale / math.sqrt(2), rel=1e-6)
    # Pure DP: ε falls as 1/scale, so doubling ε halves it.
    eps = price(query, pure, Decimal(1))
    eps2 = price(query, pure, Decimal(2))
    assert eps.rho == 0 and eps.epsilon == 1
    assert eps2.global_scale == pytest.approx(eps.global_scale / 2, rel=1e-6)
    for alias, (distribution, scale, _h) in eps.accuracy.items():
        assert eps2.accuracy[alias][1] == pytest.approx(scale / 2, rel=1e-6)
        assert "Gaussian" not in distribution


def test_pure_count_scale_is_d_in_over_epsilon_zcdp_is_d_in_over_sqrt_two_rho(
    data_path: Path,
) -> None:
    query = QUERIES["count"]
    pure = price(query, handle(PURE, data_path), Decimal("0.5"))
    assert pure.accuracy["c"][0] == "Integer Laplace"
    assert count_scale(pure) == pytest.approx(1 / 0.5, rel=1e-9)
    z = price(query, handle(ZCDP, data_path), Decimal("0.5"))
    assert count_scale(z) == pytest.approx(1 / math.sqrt(2 * 0.5), rel=1e-9)
    # A person with 3 rows: 3 times the noise, at the same ρ.
    people = price(query, handle(ZCDP_PEOPLE, data_path), Decimal("0.5"))
    assert count_scale(people) == pytest.approx(3 * count_scale(z), rel=1e-9)


# --- 4. private group keys ------------------------------------------------------------

BY_CITY = Query("t", (), ("city",), (COUNT, Agg("sum", "n", None, "s")), "table")
DELTA = Decimal("1e-7")


@pytest.mark.parametrize("unit", list(SCHEMAS))
def test_private_keys_spend_at_most_the_requested_rho_and_delta(unit: str, data_path: Path) -> None:
    schema = SCHEMAS[unit]
    priced = price(BY_CITY, handle(schema, data_path), RHO, DELTA)
    rho, delta = priced.measurement.map(unit_distance(schema))
    assert Decimal(rho) <= RHO
    assert rho >= 0.999999 * float(RHO)
    assert Decimal(delta) <= DELTA
    assert priced.rho == RHO and priced.epsilon == 0 and priced.delta == DELTA
    assert (
        priced.threshold is not None and priced.threshold > schema.privacy_unit.max_rows_per_person
    )
    assert priced.accuracy["c"][0] == "Integer Gaussian"
    assert placeholder(priced) == []  # which keys pass is known only from the data
    rows = evaluate(priced)
    assert [r["city"] for r in rows] == ["lyon", "paris"]
    assert all(r["c"]["threshold"] == priced.threshold for r in rows)


def test_private_keys_need_a_delta_on_zcdp_too(data_path: Path) -> None:
    z = handle(ZCDP, data_path)
    with pytest.raises(PlanError, match="costs delta"):
        price(BY_CITY, z, RHO)
    with pytest.raises(PlanError, match="pass no delta"):
        price(QUERIES["count"], z, RHO, DELTA)


@pytest.mark.slow
def test_a_key_held_by_one_person_almost_never_appears(data_path: Path) -> None:
    priced = price(BY_CITY, handle(ZCDP_PEOPLE, data_path), RHO, DELTA)
    trials = 1_000
    seen = {"paris": 0, "lyon": 0, "hamlet": 0}
    for _ in range(trials):
        for row in evaluate(priced):
            seen[row["city"]] += 1
    assert seen["hamlet"] <= 1  # λ = 1e-4 expected appearances
    assert seen["paris"] == seen["lyon"] == trials
    # Public keys: every declared key, every time (absent "c" as a noisy zero).
    public = Query("t", (), ("g",), (COUNT,), "table")
    priced_public = price(public, handle(ZCDP_PEOPLE, data_path), RHO)
    assert priced_public.threshold is None
    for _ in range(100):
        assert [r["g"] for r in evaluate(priced_public)] == ["a", "b", "c"]


# --- 5. ρ as (ε, δ) ---------------------------------------------------------------------


def cks_delta(rho: float, eps: float) -> float:
    """δ(ε) of a ρ-zCDP mechanism (Canonne, Kamath & Steinke 2020, the discrete Gaussian
    paper): inf over a > 1 of exp((a - 1)(aρ - ε)) / (a - 1) · (1 - 1/a)^a.

    The log of the expression is convex in a with derivative (2a - 1)ρ - ε + ln(1 - 1/a),
    increasing, so bisection on it finds the minimiser.
    """
    lo, hi = 1.0 + 1e-12, max(2.0, (eps + 1) / (2 * rho) + 2)
    for _ in range(200):
        mid = (lo + hi) / 2
        if (2 * mid - 1) * rho - eps + math.log1p(-1 / mid) < 0:
            lo = mid
        else:
            hi = mid
    a = hi
    return min(1.0, math.exp((a - 1) * (a * rho - eps) + a * math.log1p(-1 / a)) / (a - 1))


def cks_epsilon(rho: float, delta: float) -> float:
    """Smallest ε with cks_delta(ρ, ε) <= δ (δ(ε) decreases in ε), by bisection."""
    lo, hi = 0.0, rho + 2 * math.sqrt(rho * math.log(1 / delta))
    for _ in range(200):
        mid = (lo + hi) / 2
        if cks_delta(rho, mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def gaussian_delta(rho: float, eps: float) -> float:
    """Exact δ(ε) of the Gaussian mechanism with Δ/sigma = sqrt(2ρ) (Balle & Wang 2018)."""
    mu = math.sqrt(2 * rho)

    def phi(t: float) -> float:
        return 0.5 * math.erfc(-t / math.sqrt(2))

    return phi(mu / 2 - eps / mu) - math.exp(eps) * phi(-mu / 2 - eps / mu)


RHOS = [Decimal(r) for r in ("0.001", "0.01", "0.05", "0.25", "1", "4")]
DELTAS = [1e-5, 1e-7, 1e-9]


def test_zcdp_epsilon_is_zero_at_zero_and_monotone() -> None:
    assert zcdp_epsilon(Decimal(0), 1e-7) == 0.0
    for delta in DELTAS:
        values = [zcdp_epsilon(r, delta) for r in RHOS]
        assert values == sorted(values) and len(set(values)) == len(values)
    for rho in RHOS:
        values = [zcdp_epsilon(rho, d) for d in DELTAS]  # δ decreasing: ε increasing
        assert values == sorted(values) and len(set(values)) == len(values)


@pytest.mark.parametrize("delta", DELTAS)
@pytest.mark.parametrize("rho", RHOS)
def test_zcdp_epsilon_lies_between_rho_and_the_textbook_bound(rho: Decimal, delta: float) -> None:
    eps = zcdp_epsilon(rho, delta)
    r = float(rho)
    assert r < eps < r + 2 * math.sqrt(r * math.log(1 / delta))
    # Valid for the Gaussian mechanism, which is exactly ρ-zCDP: not below its true ε.
    assert gaussian_delta(r, eps) <= delta
    # And it is the conversion of Canonne, Kamath & Steinke, recomputed by hand.
    assert eps == pytest.approx(cks_epsilon(r, delta), rel=1e-6)


def test_zcdp_epsilon_matches_known_values() -> None:
    # OpenDP's own test: a Gaussian of scale 4 at sensitivity 1 (ρ = 1/32), δ = 1e-3.
    assert zcdp_epsilon(Decimal("0.03125"), 1e-3) == pytest.approx(0.6880024554878085, rel=1e-9)
    # ρ = 0.5, δ = 1e-6: textbook bound 0.5 + 2·sqrt(0.5·ln 1e6) = 5.756; CKS ~ 5.22.
    eps = zcdp_epsilon(Decimal("0.5"), 1e-6)
    assert 5.1 < eps < 5.3
    assert eps == pytest.approx(cks_epsilon(0.5, 1e-6), rel=1e-6)


# --- 6. schema ------------------------------------------------------------------------


def schema_dict(**extra: Any) -> dict[str, Any]:
    return {"columns": {"x": {"type": "int", "bounds": [0, 10]}}, **extra}


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"privacy_definition": "renyi"}, "privacy_definition must be one of"),
        ({"privacy_definition": "ZCDP"}, "privacy_definition must be one of"),
        ({"privacy_definition": ""}, "privacy_definition must be one of"),
        ({"privacy_definition": 1}, "privacy_definition must be one of"),
        ({"equivalent_delta": 1e-7}, "applies only"),
        ({"privacy_definition": "pure_dp", "equivalent_delta": 1e-7}, "applies only"),
        ({"privacy_definition": "zcdp", "equivalent_delta": 0}, "between 0 and 1"),
        ({"privacy_definition": "zcdp", "equivalent_delta": 1}, "between 0 and 1"),
        ({"privacy_definition": "zcdp", "equivalent_delta": -1e-7}, "between 0 and 1"),
        ({"privacy_definition": "zcdp", "equivalent_delta": 1.5}, "between 0 and 1"),
        ({"privacy_definition": "zcdp", "equivalent_delta": float("nan")}, "between 0 and 1"),
        ({"privacy_definition": "zcdp", "equivalent_delta": "1e-7"}, "between 0 and 1"),
        ({"privacy_definition": "zcdp", "equivalent_delta": True}, "between 0 and 1"),
    ],
)
def test_bad_privacy_definitions_are_schema_errors(extra: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SchemaError, match=fragment):
        Schema.from_dict(schema_dict(**extra))


def test_privacy_definition_round_trips() -> None:
    z = Schema.from_dict(schema_dict(privacy_definition="zcdp", equivalent_delta=1e-9))
    assert z.zcdp and z.privacy_definition == "zcdp" and z.equivalent_delta == 1e-9
    assert Schema.from_dict(z.to_dict()) == z
    assert Schema.from_json(z.to_json()) == z
    assert Schema.from_dict(ZCDP_PEOPLE.to_dict()) == ZCDP_PEOPLE
    default = Schema.from_dict(schema_dict(privacy_definition="zcdp"))
    assert default.zcdp and 0 < default.equivalent_delta < 1
    assert Schema.from_dict(default.to_dict()) == default
    toml = Schema.from_toml(
        'privacy_definition = "zcdp"\nequivalent_delta = 1e-8\n'
        '[columns.x]\ntype = "int"\nbounds = [0, 10]\n'
    )
    assert toml.zcdp and toml.equivalent_delta == 1e-8
    # Pure DP stays the default and is stored as before (no new keys).
    pure = Schema.from_dict(schema_dict())
    explicit = Schema.from_dict(schema_dict(privacy_definition="pure_dp"))
    assert not pure.zcdp and pure == explicit
    assert "privacy_definition" not in pure.to_dict()
    assert "equivalent_delta" not in pure.to_dict()
    assert Schema.from_dict(pure.to_dict()) == pure


# --- 7. neighbouring datasets ---------------------------------------------------------


@pytest.mark.parametrize("unit", list(SCHEMAS))
@pytest.mark.parametrize("name", [*QUERIES, "by_city"])
def test_one_more_person_changes_neither_cost_nor_noise(
    unit: str, name: str, data_path: Path, neighbour_path: Path
) -> None:
    schema = SCHEMAS[unit]
    query, delta = (BY_CITY, DELTA) if name == "by_city" else (QUERIES[name], Decimal(0))
    a = price(query, handle(schema, data_path), RHO, delta)
    b = price(query, handle(schema, neighbour_path), RHO, delta)
    d_in = unit_distance(schema)
    assert (a.epsilon, a.rho, a.delta) == (b.epsilon, b.rho, b.delta)
    assert a.global_scale == b.global_scale
    assert a.threshold == b.threshold
    assert a.accuracy == b.accuracy
    assert a.part_accuracy == b.part_accuracy
    assert a.measurement.map(d_in) == b.measurement.map(d_in)
    # And the neighbour's release carries the same announced noise.
    if name != "by_city":
        out_a = list(released(evaluate(a), query))
        out_b = list(released(evaluate(b), query))
        assert [v["noise_scale"] for *_, v in out_a] == [v["noise_scale"] for *_, v in out_b]
