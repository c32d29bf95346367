"""Quantiles: OpenDP's ``dp.quantile`` over public candidates, priced, released and
checked against its exact output distribution (no seeding: the noise is OpenDP's).

The mechanism. OpenDP scores candidate c by D·|(1 - q)·#{x < c} - q·#{x > c}| for an
integer denominator D (2 for a median; usize::MAX // max_rows, or the exact binary
fraction of q when that is smaller) and releases report-noisy-max with exponential
noise, "ExponentialMin": the candidate maximising -score + E, E ~ Exp(scale), i.e.
the minimiser of score - E (the noise is *subtracted*: exponential noise is one-sided,
and argmin(score + E) would be a different, more concentrated distribution). That is
permute-and-flip (McKenna & Sheldon 2020). With the scale s·D·max(q, 1 - q) OpenDP
uses, dividing by D gives the release's ``noise_scale`` b = s·max(q, 1 - q) in rows
of rank, and the privacy map is ε = 2·d_in / s.

Writing g_i = score_i - min score (in rows) and p_i = exp(-g_i / b), candidate i wins
with probability

    P(i) = ∫_0^∞ (1/b) e^{-(u + g_i)/b} ∏_{j≠i} (1 - e^{-(u + g_j)/b}) du
         = p_i ∫_0^1 ∏_{j≠i} (1 - p_j y) dy            (y = e^{-u/b}),

a polynomial integral, computed exactly below and checked against permute-and-flip
enumerated over all orders. Measured while writing these tests (4,000 releases of
similar plans): this law fits (chi-square p = 0.58 and 0.67), while the same law with
b scaled by 1.2 or 1/1.2, the exponential mechanism proper (P ∝ e^{-score/b}) and
argmin(score + E) are all rejected at p < 1e-16. At the 2,000 releases used below the
test rejects each of these alternatives with probability >= 0.96 (noncentral
chi-square).

Failure probabilities:

* Exact distribution (each of two cases): 2,000 releases; Pearson's statistic over
  cells of expected count >= 10 (smaller ones pooled) is compared with the chi-square
  critical value at tail 1e-6: 38.26 at 6 degrees of freedom (float median) and 40.52
  at 7 (int, q = 0.3). A correct mechanism fails with probability ~1e-6 each
  (chi-square approximation, every cell expecting >= 10).
* Rank-error coverage (each of two levels): a candidate whose score exceeds the best
  by g wins with probability <= p_i/2 (in the integral, the best candidate's factor is
  1 - y), so by the union bound a release exceeds ``rank_error`` = b·ln(|C|/0.05)
  with probability p <= 0.025. Over 2,000 releases, P(fraction > 0.05) <=
  exp(-2000·KL(0.05 || 0.025)) = exp(-19.9) ~ 2.2e-9 (Chernoff-Hoeffding).
* Absent keys and empty filters (all scores 0, so uniform over 4 candidates):
  400 releases miss some candidate with probability <= 4·(3/4)^400 ~ 4e-50.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from jobs import DatasetHandle, PlanError, Schema
from jobs._api import Released, make_namespace, wrap_release
from jobs._compiler import (
    DEFAULT_CANDIDATES,
    candidates,
    evaluate,
    placeholder,
    price,
    rank_error,
    validate,
)
from jobs._plan import (
    Agg,
    BinOp,
    Col,
    FillNull,
    Lit,
    Query,
    check_structure,
    from_wire,
    to_wire,
)

SCHEMA = Schema.from_dict(
    {
        "max_rows": 10_000,
        "columns": {
            "x": {"type": "float", "bounds": [0, 100]},
            "n": {"type": "int", "bounds": [0, 40]},
            "age": {"type": "int", "bounds": [0, 5000]},
            "g": {"type": "category", "categories": ["a", "b", "c"]},
            "flag": {"type": "bool"},
            "maybe": {"type": "float", "bounds": [0, 1], "nullable": True},
        },
    }
)
ROWS = 150
#: Deterministic data (no randomness needed); group "c" is declared but absent.
XS = [float((i * 37) % 101) for i in range(ROWS)]
NS = [(i * 7) % 41 for i in range(ROWS)]
AGES = [(i * 613) % 5001 for i in range(ROWS)]
GS = ["a" if i % 3 else "b" for i in range(ROWS)]
ALPHA = 0.05


def frame(n_rows: int = ROWS) -> pl.DataFrame:
    """The test rows; ``n_rows = ROWS + 1`` adds one row (a neighbouring dataset)."""
    extra = n_rows - ROWS
    return pl.DataFrame(
        {
            "x": XS + [99.5] * extra,
            "n": NS + [40] * extra,
            "age": AGES + [5000] * extra,
            "g": GS + ["a"] * extra,
            "flag": [i % 2 == 0 for i in range(n_rows)],
            "maybe": [0.5] * n_rows,
        }
    )


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> DatasetHandle:
    path = tmp_path_factory.mktemp("quantiles") / "data.parquet"
    frame().write_parquet(path)
    return DatasetHandle("t", SCHEMA, path)


@pytest.fixture(scope="module")
def neighbour(tmp_path_factory: pytest.TempPathFactory) -> DatasetHandle:
    path = tmp_path_factory.mktemp("quantiles_neighbour") / "data.parquet"
    frame(ROWS + 1).write_parquet(path)
    return DatasetHandle("t", SCHEMA, path)


def quantile_agg(
    column: str,
    q: float,
    cands: Sequence[float] | None = None,
    alias: str = "m",
    bounds: tuple[float, float] | None = None,
) -> Agg:
    return Agg("quantile", column, bounds, alias, q, None if cands is None else tuple(cands))


def scalar(agg: Agg, filters: tuple[Any, ...] = ()) -> Query:
    return Query("t", filters, (), (agg,), "scalar")


# --- theory ---------------------------------------------------------------------------


def discrepancy(data: Sequence[float], c: float, q: float) -> float:
    """OpenDP's quantile score of ``c`` divided by its denominator D: rows of rank."""
    ordered = sorted(data)
    lt = bisect.bisect_left(ordered, c)
    gt = len(ordered) - bisect.bisect_right(ordered, c)
    return abs((1 - q) * lt - q * gt)


def win_probabilities(scores: Sequence[float], b: float) -> list[float]:
    """Exact output law of argmax(-score + Exp(b)) = permute-and-flip.

    P(i) = p_i ∫_0^1 ∏_{j≠i} (1 - p_j y) dy with p_j = exp(-(score_j - min)/b); the
    integrand is a polynomial in y, expanded and integrated term by term (exact up to
    rounding; the coefficients stay small for the dozen candidates used here).
    """
    assert len(scores) <= 20, "the expansion is meant for a few candidates"
    low = min(scores)
    p = [math.exp(-(s - low) / b) for s in scores]
    out = []
    for i, p_i in enumerate(p):
        poly = [1.0]  # coefficients of y^0, y^1, ...
        for j, p_j in enumerate(p):
            if j != i:
                poly = [a - p_j * c for a, c in zip([*poly, 0.0], [0.0, *poly], strict=True)]
        out.append(p_i * sum(c / (k + 1) for k, c in enumerate(poly)))
    return out


def permute_and_flip(scores: Sequence[float], b: float) -> list[float]:
    """Permute-and-flip enumerated over every order (for a handful of candidates).

    In a uniformly random order, candidate k is accepted with probability
    exp(-(score_k - min)/b); the first accepted one is released.
    """
    low = min(scores)
    p = [math.exp(-(s - low) / b) for s in scores]
    out = [0.0] * len(p)
    orders = list(itertools.permutations(range(len(p))))
    for order in orders:
        reach = 1.0
        for k in order:
            out[k] += reach * p[k] / len(orders)
            reach *= 1 - p[k]
    return out


def chi2_sf(x: float, df: int) -> float:
    """P(χ²_df > x), exact for integer df (closed forms for even and odd df).

    >>> round(chi2_sf(3.841458820694124, 1), 6), round(chi2_sf(5.991464547107979, 2), 6)
    (0.05, 0.05)
    """
    h = x / 2
    if df % 2 == 0:
        term = total = math.exp(-h)
        for k in range(1, df // 2):
            term *= h / k
            total += term
        return total
    total = math.erfc(math.sqrt(h))
    term = math.exp(-h) * math.sqrt(h) / math.gamma(1.5)
    for k in range(1, (df - 1) // 2 + 1):
        total += term
        term *= h / (k + 0.5)
    return total


def chi2_critical(df: int, tail: float) -> float:
    """The x with P(χ²_df > x) = tail, by bisection."""
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chi2_sf(mid, df) > tail else (lo, mid)
    return hi


@dataclass(frozen=True)
class GoodnessOfFit:
    statistic: float
    df: int
    critical: float


def pearson(observed: Sequence[int], probabilities: Sequence[float], tail: float) -> GoodnessOfFit:
    """Pearson's chi-square; cells expecting fewer than 10 draws are pooled."""
    n = sum(observed)
    cells = [(o, n * p) for o, p in zip(observed, probabilities, strict=True)]
    kept = sorted((c for c in cells if c[1] >= 10), key=lambda c: c[1])
    small = [c for c in cells if c[1] < 10]
    pooled = (sum(o for o, _ in small), sum(e for _, e in small))
    if pooled[1] >= 10:
        kept.append(pooled)
    elif small:  # fold a thin pool into the smallest kept cell
        o, e = kept.pop(0)
        kept.append((o + pooled[0], e + pooled[1]))
    statistic = sum((o - e) ** 2 / e for o, e in kept)
    df = len(kept) - 1
    return GoodnessOfFit(statistic, df, chi2_critical(df, tail))


def test_the_integral_is_permute_and_flip() -> None:
    """The closed-form law used below equals permute-and-flip, enumerated exhaustively.

    So the exact-distribution test checks OpenDP against the mechanism its docs cite,
    and the law sums to one.
    """
    for scores, b in [
        ([0.0, 10.0], 10.0),
        ([0.0, 10.0, 10.0], 10.0),
        ([3.0, 0.0, 7.5, 1.0, 20.0, 0.0], 4.0),
    ]:
        exact = win_probabilities(scores, b)
        assert exact == pytest.approx(permute_and_flip(scores, b), abs=1e-12)
        assert sum(exact) == pytest.approx(1.0, abs=1e-12)
    # Two candidates: the worse one wins only if drawn first and then accepted.
    assert win_probabilities([0.0, 10.0], 10.0)[1] == pytest.approx(math.exp(-1) / 2)


# --- 1. the exact output distribution --------------------------------------------------

EXACT_CASES: dict[str, tuple[str, Sequence[float], float, tuple[float, ...]]] = {
    # column, data, level, candidates: every case leaves 5+ candidates with
    # non-negligible probability at epsilon = 0.1 (b = 10 and 14 rows).
    "float-median": ("x", XS, 0.5, tuple(float(c) for c in range(0, 101, 10))),
    "int-q30": ("n", NS, 0.3, tuple(range(0, 41, 4))),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(EXACT_CASES))
def test_released_candidates_follow_the_exact_law(handle: DatasetHandle, case: str) -> None:
    """2,000 releases of one quantile match report-noisy-max with exponential noise.

    The noise scale in rows is the release's ``noise_scale`` = global_scale·max(q,
    1 - q), and OpenDP's privacy map is 2·d_in / global_scale: both are what
    ``price`` states. Chi-square goodness of fit, false-failure probability ~1e-6.
    """
    column, data, q, cands = EXACT_CASES[case]
    epsilon = Decimal("0.1")
    priced = price(scalar(quantile_agg(column, q, cands)), handle, epsilon)
    s = priced.global_scale
    assert priced.measurement.map(1) == pytest.approx(2 / s, rel=1e-12)
    assert priced.measurement.map(1) <= 0.1
    assert priced.measurement.map(2) == pytest.approx(4 / s, rel=1e-12)
    mechanism, b, half = priced.accuracy["m"]
    assert mechanism == "ExponentialMin"
    assert b == pytest.approx(s * max(q, 1 - q), rel=1e-12)
    assert half == pytest.approx(b * math.log(len(cands) / ALPHA), rel=1e-12)

    probabilities = win_probabilities([discrepancy(data, c, q) for c in cands], b)
    assert sum(p > 0.01 for p in probabilities) >= 5  # the test has something to see
    releases = 2000
    counts: Counter[float] = Counter()
    for _ in range(releases):
        out = evaluate(priced)
        assert out["value"] in cands
        assert out["noise_scale"] == b and out["rank_error"] == half
        counts[out["value"]] += 1
    fit = pearson([counts[c] for c in cands], probabilities, tail=1e-6)
    assert fit.df >= 5
    assert fit.statistic < fit.critical, (fit, [counts[c] for c in cands], probabilities)


# --- 2. rank-error coverage --------------------------------------------------------------


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetHandle, list[float]]:
    """4,000 floats over [0, 500] (data drawn once, from a fixed seed)."""
    rng = random.Random(11)
    values = [round(rng.uniform(0, 500), 2) for _ in range(4000)]
    schema = Schema.from_dict(
        {"max_rows": 10_000, "columns": {"v": {"type": "float", "bounds": [0, 500]}}}
    )
    path = tmp_path_factory.mktemp("spread") / "data.parquet"
    pl.DataFrame({"v": values}).write_parquet(path)
    return DatasetHandle("s", schema, path), values


@pytest.mark.slow
@pytest.mark.parametrize("q", [0.25, 0.9])
def test_rank_error_bounds_the_rank_discrepancy(
    spread: tuple[DatasetHandle, list[float]], q: float
) -> None:
    """At most 5% of 2,000 releases are further than ``rank_error`` rows from the best
    candidate's rank discrepancy |(1 - q)·#{x < c} - q·#{x > c}| (default 1,001
    candidates, epsilon 0.05). Per release p <= 0.025; failure probability ~2.2e-9.
    """
    handle, values = spread
    query = Query("s", (), (), (quantile_agg("v", q),), "scalar")
    priced = price(query, handle, Decimal("0.05"))
    spec = handle.schema.column("v")
    assert spec is not None
    grid = candidates(query.aggs[0], spec)
    assert len(grid) == DEFAULT_CANDIDATES
    ordered = sorted(values)

    def miss(c: float) -> float:
        lt = bisect.bisect_left(ordered, c)
        gt = len(ordered) - bisect.bisect_right(ordered, c)
        return abs((1 - q) * lt - q * gt)

    best = min(miss(c) for c in grid)
    bound = priced.accuracy["m"][2]
    assert bound == pytest.approx(rank_error(q, len(grid), priced.global_scale, ALPHA))
    releases = 2000
    beyond = 0
    for _ in range(releases):
        out = evaluate(priced)
        assert out["rank_error"] == bound
        beyond += miss(out["value"]) > best + bound
    assert beyond / releases <= 0.05


# --- 3. several quantiles, one release; estimate == charge -------------------------------


def _api_release(handle: DatasetHandle, build: Any, epsilon: float) -> tuple[list[Query], Any, Any]:
    """Run ``build(ns)`` through the job API against a real host (price + evaluate)."""
    seen: list[Query] = []

    def host(query: Query, eps: Any, *_rest: Any) -> Any:  # *_rest: delta (and rho)
        seen.append(query)
        return evaluate(price(query, handle, Decimal(str(eps))))

    ns = make_namespace(host, "t")
    return seen, ns, ns["release"](build(ns), epsilon=epsilon)


def test_several_quantiles_are_one_release_at_the_requested_epsilon(
    handle: DatasetHandle,
) -> None:
    """``quantile("x", [0.25, 0.5, 0.75])`` is one plan: the three selections compose to
    exactly the ε asked for, and each has its own noise scale and rank error."""
    seen, _ns, out = _api_release(
        handle, lambda ns: ns["dataset"]().agg(ns["quantile"]("x", [0.25, 0.5, 0.75])), 0.9
    )
    [query] = seen
    assert [a.alias for a in query.aggs] == ["q25_x", "median_x", "q75_x"]
    assert [a.q for a in query.aggs] == [0.25, 0.5, 0.75]
    assert set(out) == {"q25_x", "median_x", "q75_x"}
    priced = price(query, handle, Decimal("0.9"))
    assert priced.measurement.map(1) <= 0.9
    assert priced.measurement.map(1) == pytest.approx(0.9, rel=1e-9)
    s = priced.global_scale
    assert s == pytest.approx(3 * 2 / 0.9, rel=1e-9)  # three selections at 2/s each
    for a in query.aggs:
        assert a.q is not None
        released = out[a.alias]
        assert isinstance(released, Released)
        assert released.aggregate == "quantile" and released.q == a.q
        assert released.ci95 is None
        assert 0 <= released.value <= 100
        assert released.noise_scale == pytest.approx(s * max(a.q, 1 - a.q))
        assert released.rank_error == pytest.approx(
            rank_error(a.q, DEFAULT_CANDIDATES, s, ALPHA), rel=1e-9
        )
        assert released._json()["rank_error"] == released.rank_error
    # The frame shorthand with a list of levels builds the same record plan.
    seen2, _ns, _out = _api_release(
        handle, lambda ns: ns["dataset"]().quantile("x", [0.25, 0.5, 0.75]), 0.9
    )
    assert seen2 == seen


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(
            Query(
                "t",
                (),
                (),
                (
                    quantile_agg("x", 0.25, alias="lo"),
                    quantile_agg("n", 0.5, alias="mid"),
                    quantile_agg("x", 0.9, [10, 20.5, 70], alias="hi"),
                    Agg("count", None, None, "count"),
                ),
                "record",
            ),
            id="record",
        ),
        pytest.param(
            Query("t", (), ("g",), (quantile_agg("age", 0.5), Agg("sum", "x", None, "s")), "table"),
            id="grouped",
        ),
    ],
)
def test_estimate_equals_charge_and_cost_ignores_the_data(
    handle: DatasetHandle, neighbour: DatasetHandle, query: Query
) -> None:
    """The cost-only placeholder states the same mechanism, noise scale and rank
    error as the real release, and two neighbouring datasets (one row added) get the
    identical calibration and cost."""
    epsilon = Decimal("0.7")
    priced, other = price(query, handle, epsilon), price(query, neighbour, epsilon)
    assert other.global_scale == priced.global_scale
    assert other.accuracy == priced.accuracy
    assert other.measurement.map(1) == priced.measurement.map(1) <= 0.7
    guess = placeholder(priced)
    assert placeholder(other) == guess
    stated = ("aggregate", "column", "mechanism", "noise_scale", "rank_error", "q", "ci95")
    for actual in (evaluate(priced), evaluate(other)):
        rows = actual if isinstance(actual, list) else [actual]
        guesses = guess if isinstance(guess, list) else [guess]
        assert len(rows) == len(guesses)
        for row, row_guess in zip(rows, guesses, strict=True):
            for a in query.aggs:
                if a.op != "quantile":
                    continue
                real, est = row[a.alias], row_guess[a.alias]
                assert {k: real[k] for k in stated} == {k: est[k] for k in stated}
                assert est["placeholder"] is True
                spec = SCHEMA.column(a.column or "")
                assert spec is not None
                grid = candidates(a, spec)
                assert real["value"] in grid and est["value"] in grid
                assert type(real["value"]) is type(est["value"])


@pytest.mark.parametrize("op", ["mean", "variance", "std"])
def test_a_quantile_can_share_a_release_with_a_mean(handle: DatasetHandle, op: str) -> None:
    """``agg(median("x"), mean("x"))`` is an ordinary plan: it prices and releases."""
    query = Query("t", (), (), (quantile_agg("x", 0.5), Agg(op, "x", None, "o")), "record")
    out = evaluate(price(query, handle, Decimal(1)))
    assert out["m"]["aggregate"] == "quantile" and out["o"]["aggregate"] == op


def test_a_person_privacy_unit_doubles_the_quantile_noise() -> None:
    """With two rows per person, one person moves a score twice as far: for the same ε,
    ``global_scale`` and the noise scale in rows double, and so does the rank error."""
    columns = {"x": {"type": "float", "bounds": [0, 100]}, "person": {"type": "string"}}
    rows = Schema.from_dict({"columns": columns})
    people = Schema.from_dict(
        {"columns": columns, "privacy_unit": {"column": "person", "max_rows_per_person": 2}}
    )
    query = scalar(quantile_agg("x", 0.3, [0, 50, 100]))
    nowhere = Path("/nonexistent")
    by_row = price(query, DatasetHandle("t", rows, nowhere), Decimal(1))
    by_person = price(query, DatasetHandle("t", people, nowhere), Decimal(1))
    assert by_person.measurement.map(by_person.d_in) <= 1
    assert by_person.global_scale == pytest.approx(2 * by_row.global_scale, rel=1e-9)
    assert by_person.accuracy["m"][1] == pytest.approx(2 * by_row.accuracy["m"][1], rel=1e-9)
    assert by_person.accuracy["m"][2] == pytest.approx(2 * by_row.accuracy["m"][2], rel=1e-9)


# --- 4. validation and the wire form --------------------------------------------------------

# A float divisor whose range contains 0: the quotient has no bounds (x / 0 is null, filled).
_UNBOUNDED = (
    ("ratio", FillNull(BinOp("truediv", Col("x"), BinOp("sub", Col("x"), Lit(50.0))), 0.0)),
)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            scalar(quantile_agg("n", 0.5, [1, 2.5, 4])),
            "candidates of an int column must be integers",
        ),
        (
            scalar(quantile_agg("x", 0.5, [1, 2], bounds=(0, 10))),
            "pass bounds or candidates, not both",
        ),
        (scalar(quantile_agg("flag", 0.5)), "boolean column has no useful quantiles"),
        (scalar(quantile_agg("flag", 0.5, [0, 1])), "boolean column has no useful quantiles"),
        (
            Query("t", (), (), (quantile_agg("ratio", 0.5),), "scalar", derived=_UNBOUNDED),
            r"derived column has no known bounds; pass bounds=\(lo, hi\) or candidates",
        ),
        (scalar(quantile_agg("maybe", 0.5)), "may hold nulls"),
        (scalar(quantile_agg("g", 0.5)), "column is category, not numeric"),
        (scalar(quantile_agg("nope", 0.5)), "has no column 'nope'"),
        (scalar(quantile_agg("x", 0.5, bounds=(0, 1000))), "must lie within the column's public"),
    ],
)
def test_invalid_quantiles_are_specific_plan_errors(query: Query, message: str) -> None:
    """Each mistake is refused by ``validate`` (before any charge) with a message that
    names the column and says what to do."""
    with pytest.raises(PlanError, match=message):
        validate(query, SCHEMA)


def test_derived_columns_take_bounds_or_candidates(handle: DatasetHandle) -> None:
    """A derived column without known bounds is fine once bounds or candidates are given."""
    for agg in (quantile_agg("ratio", 0.5, bounds=(0, 10)), quantile_agg("ratio", 0.5, [0, 1, 2])):
        query = Query("t", (), (), (agg,), "scalar", derived=_UNBOUNDED)
        out = evaluate(price(query, handle, Decimal(1)))
        assert 0 <= out["value"] <= 10


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda ns: ns["quantile"]("x", 1.5), "between 0 and 1"),
        (lambda ns: ns["quantile"]("x", -0.01), "between 0 and 1"),
        (lambda ns: ns["quantile"]("x", float("nan")), "between 0 and 1"),
        (lambda ns: ns["quantile"]("x", "0.5"), "between 0 and 1"),
        (lambda ns: ns["quantile"]("x", True), "between 0 and 1"),
        (lambda ns: ns["quantile"]("x", []), "at least one level"),
        (lambda ns: ns["quantile"]("x", 0.5, candidates=[1, 3, 2]), "strictly increasing"),
        (lambda ns: ns["quantile"]("x", 0.5, candidates=[1, 1]), "strictly increasing"),
        (lambda ns: ns["quantile"]("x", 0.5, candidates=[]), "list of 1 to"),
        (lambda ns: ns["quantile"]("x", 0.5, candidates="1,2"), "takes a list of numbers"),
        (lambda ns: ns["quantile"]("x", 0.5, candidates=[1, float("inf")]), "finite numbers"),
        (lambda ns: ns["median"]("x", candidates=[True, 2]), "finite numbers"),
        (lambda ns: ns["dataset"]().agg(ns["quantile"]("x", [0.5, 0.5])), "duplicate"),
    ],
)
def test_the_job_api_refuses_bad_levels_and_candidates(build: Any, message: str) -> None:
    """The script sees a PlanError at once, before anything is sent to the host."""

    def host(*_args: Any) -> Any:  # pragma: no cover - never reached
        raise AssertionError("a malformed quantile reached the host")

    with pytest.raises(PlanError, match=message):
        build(make_namespace(host, "t"))


def test_check_structure_refuses_levels_out_of_range_and_stray_arguments() -> None:
    """Plans built without the API are checked the same way."""
    with pytest.raises(PlanError, match="between 0 and 1"):
        check_structure(scalar(quantile_agg("x", 1.5)))
    with pytest.raises(PlanError, match="increasing"):
        check_structure(scalar(quantile_agg("x", 0.5, [2, 1])))
    with pytest.raises(PlanError, match="takes no quantile level or candidates"):
        check_structure(scalar(Agg("sum", "x", None, "s", q=0.5)))
    with pytest.raises(PlanError, match="takes no quantile level or candidates"):
        check_structure(scalar(Agg("mean", "x", None, "s", candidates=(1.0,))))


def test_an_out_of_range_level_is_refused_by_price_too(handle: DatasetHandle) -> None:
    """Even a plan that skipped the structural checks is refused before any charge."""
    with pytest.raises(PlanError):
        price(scalar(quantile_agg("x", 1.5, [0, 50])), handle, Decimal(1))


def test_the_wire_form_keeps_levels_and_candidates() -> None:
    """``from_wire(to_wire(q)) == q`` for quantiles with and without candidates, and
    the level and candidates travel under their own keys."""
    query = Query(
        "t",
        (),
        ("g",),
        (
            quantile_agg("x", 0.25, [0, 12.5, 99]),
            quantile_agg("n", 0.5, alias="med"),
            quantile_agg("age", 1.0, alias="top", bounds=(10, 20)),
            Agg("count", None, None, "count"),
        ),
        "table",
    )
    wire = to_wire(query)
    assert wire["aggs"][0]["q"] == 0.25 and wire["aggs"][0]["candidates"] == [0, 12.5, 99]
    assert wire["aggs"][1]["candidates"] is None
    assert "q" not in wire["aggs"][3] and "candidates" not in wire["aggs"][3]
    assert from_wire(wire) == query


def _quantile_wire(**changes: Any) -> dict[str, Any]:
    wire = to_wire(scalar(quantile_agg("x", 0.5, [1, 2, 3])))
    agg = wire["aggs"][0] | changes
    for key in [k for k, v in changes.items() if v is _DROP]:
        del agg[key]
    return wire | {"aggs": [agg]}


_DROP = object()


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (_quantile_wire(candidates=_DROP), "malformed aggregate"),
        (_quantile_wire(q=_DROP), "malformed aggregate"),
        (_quantile_wire(extra=1), "malformed aggregate"),
        (_quantile_wire(q=1.5), "between 0 and 1"),
        (_quantile_wire(q=None), "between 0 and 1"),
        (_quantile_wire(q="0.5"), "between 0 and 1"),
        (_quantile_wire(q=[0.5]), "between 0 and 1"),
        (_quantile_wire(candidates=[3, 2]), "strictly increasing"),
        (_quantile_wire(candidates="1,2"), "candidates must be a list"),
        (_quantile_wire(candidates=[1, float("nan")]), "candidates must be a list"),
        (_quantile_wire(candidates=[1, {"lit": 2}]), "candidates must be a list"),
        (_quantile_wire(candidates=list(range(10_001))), "candidates must be a list"),
        (_quantile_wire(op="count", column=None), "malformed aggregate"),
        (_quantile_wire(op="sum"), "malformed aggregate"),
    ],
)
def test_the_wire_form_rejects_junk(wire: dict[str, Any], message: str) -> None:
    """A hostile worker's JSON: a level on a count, missing keys, bad values."""
    with pytest.raises(PlanError, match=message):
        from_wire(wire)


def test_a_level_on_a_count_is_rejected_on_the_wire() -> None:
    """``q`` and ``candidates`` belong to quantiles only."""
    wire = to_wire(scalar(Agg("count", None, None, "count")))
    with pytest.raises(PlanError, match="malformed aggregate"):
        from_wire(wire | {"aggs": [wire["aggs"][0] | {"q": 0.5}]})
    with pytest.raises(PlanError, match="malformed aggregate"):
        from_wire(wire | {"aggs": [wire["aggs"][0] | {"q": None, "candidates": None}]})


# --- 5. grouped quantiles, absent keys, empty filters ---------------------------------------

FOUR = (0.0, 25.0, 50.0, 75.0)


def test_grouped_quantiles_list_every_public_key(handle: DatasetHandle) -> None:
    """Every declared key appears in order; "c" is absent from the data and still gets a
    candidate value (all its scores are 0: uniform over the candidates), not an error."""
    query = Query(
        "t",
        (),
        ("g",),
        (quantile_agg("x", 0.5, FOUR), Agg("count", None, None, "count")),
        "table",
    )
    priced = price(query, handle, Decimal(1))
    seen: Counter[float] = Counter()
    for _ in range(400):
        rows = evaluate(priced)
        assert [r["g"] for r in rows] == ["a", "b", "c"]
        for r in rows:
            assert r["m"]["value"] in FOUR
            assert r["m"]["aggregate"] == "quantile" and r["m"]["ci95"] is None
        seen[rows[2]["m"]["value"]] += 1
    assert set(seen) == set(FOUR)


def test_a_filter_matching_no_row_gives_a_candidate(handle: DatasetHandle) -> None:
    """No row: every candidate scores 0 and each is released (uniformly), no error."""
    empty = (BinOp("gt", Col("x"), Lit(1000.0)),)
    priced = price(scalar(quantile_agg("x", 0.5, FOUR), empty), handle, Decimal(1))
    seen = Counter(evaluate(priced)["value"] for _ in range(400))
    assert set(seen) == set(FOUR)
    grouped = Query("t", empty, ("g",), (quantile_agg("n", 0.1),), "table")
    rows = evaluate(price(grouped, handle, Decimal(1)))
    assert [r["g"] for r in rows] == ["a", "b", "c"]
    assert all(type(r["m"]["value"]) is int and 0 <= r["m"]["value"] <= 40 for r in rows)


# --- 6. integer medians ------------------------------------------------------------------------


@pytest.mark.parametrize(("column", "n_candidates"), [("n", 41), ("age", DEFAULT_CANDIDATES)])
def test_median_of_an_int_column_is_an_int_within_bounds(
    handle: DatasetHandle, column: str, n_candidates: int
) -> None:
    """Default candidates of an int column are ints (every value of a narrow range, a
    rounded grid of a wide one), and so is the released median, through the API too."""
    spec = SCHEMA.column(column)
    assert spec is not None and spec.bounds is not None
    lo, hi = spec.bounds
    agg = quantile_agg(column, 0.5, alias=f"median_{column}")
    grid = candidates(agg, spec)
    assert len(grid) == n_candidates
    assert all(type(c) is int for c in grid) and grid[0] == lo and grid[-1] == hi
    priced = price(scalar(agg), handle, Decimal(1))
    for _ in range(20):
        value = evaluate(priced)["value"]
        assert type(value) is int and lo <= value <= hi and value in grid
    assert type(placeholder(priced)["value"]) is int
    _seen, _ns, released = _api_release(handle, lambda ns: ns["dataset"]().median(column), 1)
    assert isinstance(released, Released)
    assert type(released.value) is int and lo <= released.value <= hi
    assert released.q == 0.5 and released.ci95 is None
    assert released.rank_error is not None and released.rank_error > 0
    assert wrap_release(evaluate(priced), "scalar").value in grid


def test_a_release_has_at_most_twenty_five_thousand_candidates_in_all() -> None:
    """Pricing is unpaid host work growing with the candidates: the total is capped,
    counting the default grids (1,001 values each) too, before OpenDP sees the plan."""
    grid = [float(i) for i in range(10_000)]
    two = Query(
        "t",
        (),
        (),
        (quantile_agg("x", 0.25, grid, "a"), quantile_agg("x", 0.75, grid, "b")),
        "record",
    )
    grids = tuple(quantile_agg("x", i / 10, alias=f"g{i}") for i in range(1, 6))
    validate(Query("t", (), (), (*two.aggs, *grids[:4]), "record"), SCHEMA)  # 24,004
    over = Query("t", (), (), (*two.aggs, *grids), "record")
    with pytest.raises(PlanError, match=r"25005 candidates in all, more than the 25000"):
        validate(over, SCHEMA)
