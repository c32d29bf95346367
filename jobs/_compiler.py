"""The one place where plans become OpenDP measurements.

Three steps, in the order the invariants demand:

1. `validate` checks a `Query` against the dataset's *public* schema. Its
   errors are specific (unknown column, bad bounds) because they depend on
   nothing confidential.
2. `price` builds the OpenDP measurement and calibrates its noise so that the
   privacy map at the dataset's privacy unit is at most the requested ε. No data
   is touched: the cost is a function of the plan and the schema (invariant 4).
3. `evaluate` runs the measurement on the stored Parquet file. The caller
   debits the ledger between 2 and 3 (invariant 2). Any exception here is
   replaced by a fixed message, since evaluation errors may quote data.

Noise calibration without a binary search
-----------------------------------------
OpenDP's Context API finds the noise scale by bisection (~1,100 measurement
builds, ~1.5 s). With a ``global_scale`` every query in the plan has noise of
scale ``global_scale * sensitivity``, so the plan's ε (pure DP) is exactly
inversely proportional to ``global_scale``, and its ρ (zero-concentrated DP,
Gaussian noise) inversely proportional to its square. We build the measurement
once at ``global_scale = 1``, read ε₁ (or ρ₁) from its privacy map, set
``s = ε₁ / ε`` (or ``sqrt(ρ₁ / ρ)``), build again and *check* the map (OpenDP's
maps round conservatively, so the check may nudge ``s`` up by a few ulps). Two
or three builds of ~1 ms instead of a search.

The ε (or ρ) handed to OpenDP is the largest float not above the decimal amount
the ledger charges, so the charged amount always covers the true loss.

Data are scanned from Parquet with ``scan_parquet``: OpenDP serialises the
LazyFrame plan across its FFI on every call, and a scan serialises in
microseconds whereas an in-memory frame is copied whole.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
import operator
import statistics
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import opendp.prelude as dp
import polars as pl
from opendp.accuracy import summarize_polars_measurement

from ._errors import EvaluationFailed, PlanError
from ._plan import (
    Agg,
    BinOp,
    Cast,
    Clip,
    Col,
    Expr,
    FillNull,
    IsIn,
    Lit,
    Query,
    UnaryOp,
    When,
    quantile_args,
)
from ._schema import MAX_INT_KEYS, ColumnSpec, DatasetHandle, Schema

# "contrib" holds the Polars integration. The feature that would let a plan run
# arbitrary Python functions on the data is never enabled (invariant 5).
dp.enable_features("contrib")

log = logging.getLogger(__name__)

MAX_GROUPS = 10_000
#: The hidden noisy statistics (ALIAS__part) of the aggregates made of several.
PARTS = {"mean": ("sum", "len"), "variance": ("sum", "len", "sq"), "std": ("sum", "len", "sq")}
#: Each released value is ~200 bytes of JSON; this keeps a release well under the
#: 16 MiB worker channel message limit.
MAX_RELEASED_VALUES = 20_000
CONFIDENCE = 0.95
_POLARS_TYPES: dict[str, Any] = {
    "int": pl.Int64,
    "float": pl.Float64,
    "bool": pl.Boolean,
    "category": pl.String,
    "string": pl.String,
}


@dataclass(frozen=True)
class PricedQuery:
    """A query with its calibrated measurement and its exact cost; no data touched yet."""

    query: Query
    dataset: DatasetHandle
    #: ε charged (pure-DP datasets; 0 on zCDP datasets, which are charged `rho`).
    epsilon: Decimal
    global_scale: float
    #: δ spent on releasing private group keys (0 for pure-DP plans).
    delta: Decimal
    measurement: Any = field(repr=False)
    #: alias -> (distribution, scale, 95% half-width)
    accuracy: dict[str, tuple[str, float, float]] = field(repr=False)
    #: hidden part column -> half-width at 1 - 5%/k, for an aggregate made of k noisy
    #: parts (mean: 2, variance/std: 3); by the union bound all k parts are then
    #: inside their intervals together with probability >= 95%.
    part_accuracy: dict[str, float] = field(repr=False)
    #: Minimum noisy count for a private group key to be released (None: public keys).
    threshold: int | None = None
    #: ρ charged (zCDP datasets only).
    rho: Decimal = Decimal(0)
    #: The privacy unit as OpenDP's input distance (see `_d_in`): what
    #: ``measurement.map`` takes to give the loss that was charged.
    d_in: Any = 1


# --- 1. validation against public metadata --------------------------------------------

_KIND = {
    "int": "number",
    "float": "number",
    "bool": "boolean",
    "category": "text",
    "string": "text",
}


def _kind_of_literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "text"


def _column(schema: Schema, dataset: str, name: str) -> ColumnSpec:
    spec = schema.column(name)
    if spec is None:
        raise PlanError(
            f"dataset {dataset!r} has no column {name!r}; columns are: {', '.join(schema.names)}"
        )
    return spec


def _expr_kind(e: Expr, schema: Schema, dataset: str) -> str:
    if isinstance(e, Col):
        return _KIND[_column(schema, dataset, e.name).type]
    if isinstance(e, Lit):
        return _kind_of_literal(e.value)
    if isinstance(e, UnaryOp):
        inner = _expr_kind(e.arg, schema, dataset)
        if e.op in ("is_null", "is_not_null"):
            return "boolean"
        want = "boolean" if e.op == "not" else "number"
        if inner != want:
            sym = "~" if e.op == "not" else "-"
            raise PlanError(f"{sym} applies to a {want} expression, not to {inner}")
        return want
    if isinstance(e, IsIn):
        inner = _expr_kind(e.arg, schema, dataset)
        kinds = {_kind_of_literal(v) for v in e.values} - {"null"}
        if kinds - {inner}:
            raise PlanError(f"is_in on a {inner} expression needs {inner} values")
        return "boolean"
    if isinstance(e, (Clip, Cast)):
        inner = _expr_kind(e.arg, schema, dataset)
        if inner not in ("number", "boolean") or (isinstance(e, Clip) and inner != "number"):
            what = "clip" if isinstance(e, Clip) else "cast"
            raise PlanError(f"{what}(...) applies to numbers, not to {inner}")
        return "number"
    if isinstance(e, FillNull):
        inner = _expr_kind(e.arg, schema, dataset)
        if _kind_of_literal(e.value) != inner:
            raise PlanError(f"fill_null on a {inner} expression needs a {inner} value")
        return inner
    if isinstance(e, When):
        if _expr_kind(e.cond, schema, dataset) != "boolean":
            raise PlanError("when(...) takes a condition, e.g. when(col('age') >= 65)")
        then, other = _expr_kind(e.then, schema, dataset), _expr_kind(e.otherwise, schema, dataset)
        if "null" in (then, other):
            raise PlanError("when/then/otherwise: branches cannot be None; use a number")
        if then != other or then == "text":
            raise PlanError(
                f"when/then/otherwise: both branches must be numbers or both booleans, "
                f"got {then} and {other}"
            )
        return then
    assert isinstance(e, BinOp)
    left, right = _expr_kind(e.left, schema, dataset), _expr_kind(e.right, schema, dataset)
    if "null" in (left, right):
        raise PlanError("comparisons with None are always unknown; use .is_null()")
    if e.op in ("add", "sub", "mul", "truediv"):
        if left != "number" or right != "number":
            raise PlanError(f"arithmetic ({e.op}) needs numbers, got {left} and {right}")
        return "number"
    if e.op in ("and", "or"):
        if left != "boolean" or right != "boolean":
            raise PlanError(f"& and | combine conditions (booleans), got {left} and {right}")
        return "boolean"
    if left != right:
        raise PlanError(f"cannot compare {left} with {right}")
    if e.op not in ("eq", "ne") and left == "boolean":
        raise PlanError("booleans can only be compared with == and !=")
    return "boolean"


def _agg_bounds(agg: Agg, spec: ColumnSpec) -> tuple[float, float]:
    public = spec.numeric_bounds
    if public is None:
        # A derived column whose bounds could not be derived: the clamp is the
        # researcher's, and any clamp is sound (values are clipped to it).
        if agg.bounds is None:
            raise PlanError(
                f"{agg.op}({spec.name!r}): the derived column has no known bounds; pass "
                f"bounds=(lo, hi) or clip it in with_columns"
            )
        public = agg.bounds
    if agg.bounds is None:
        return public
    lo, hi = agg.bounds
    if lo < public[0] or hi > public[1]:
        raise PlanError(
            f"{agg.op}({spec.name!r}): bounds ({lo}, {hi}) must lie within the column's public "
            f"bounds ({public[0]}, {public[1]}); they can only narrow them"
        )
    if spec.type in ("int", "bool") and not (float(lo).is_integer() and float(hi).is_integer()):
        raise PlanError(f"{agg.op}({spec.name!r}): bounds of an integer column must be integers")
    if spec.type in ("int", "bool"):
        return (int(lo), int(hi))
    return (float(lo), float(hi))


#: Default candidate grid of a quantile: this many evenly spaced values across the
#: bounds (every integer, for an int column with no more distinct values).
DEFAULT_CANDIDATES = 1_001
#: Most candidates all the quantiles of one release may have together. Pricing
#: runs on the host before any debit, and OpenDP's analysis of many large
#: candidate sets takes seconds (100 quantiles of 10,000 candidates: 8.8 s here,
#: 20,000 in all: 0.1 s): a cap keeps an unpaid step cheap, and still allows
#: 24 quantiles on default grids (1,001 candidates each) in one release.
MAX_PLAN_CANDIDATES = 25_000


def candidates(agg: Agg, spec: ColumnSpec) -> tuple[float, ...]:
    """The public values a quantile chooses among: the researcher's, or a grid over the bounds.

    Raises:
        PlanError: candidates of the wrong type, or no bounds to lay a grid over.
    """
    quantile_args(agg.q, agg.candidates)  # also when the plan skipped check_structure
    if spec.type == "bool":
        raise PlanError(
            f"quantile({spec.name!r}): a boolean column has no useful quantiles; "
            f"mean({spec.name!r}) gives the share of true values"
        )
    if agg.candidates is not None:
        if agg.bounds is not None:
            raise PlanError(
                f"quantile({spec.name!r}): pass bounds or candidates, not both "
                "(the candidates already say which values the answer can take)"
            )
        if spec.type == "int":
            if not all(float(c).is_integer() for c in agg.candidates):
                raise PlanError(
                    f"quantile({spec.name!r}): candidates of an int column must be integers"
                )
            return tuple(int(c) for c in agg.candidates)
        return tuple(float(c) for c in agg.candidates)
    if spec.numeric_bounds is None and agg.bounds is None:
        raise PlanError(
            f"quantile({spec.name!r}): the derived column has no known bounds; pass "
            "bounds=(lo, hi) or candidates=[...]"
        )
    lo, hi = _agg_bounds(agg, spec)
    steps = DEFAULT_CANDIDATES - 1
    if spec.type == "int":
        if hi - lo <= steps:
            return tuple(range(int(lo), int(hi) + 1))
        return tuple(sorted({round(lo + i * (hi - lo) / steps) for i in range(steps + 1)}))
    return tuple(float(lo + i * (hi - lo) / steps) for i in range(steps + 1))


def rank_error(q: float, n_candidates: int, global_scale: float, alpha: float) -> float:
    """How many rows a released quantile may be off, with probability ``1 - alpha``.

    OpenDP scores a candidate c by ``|(1 - q)·#{x < c} - q·#{x > c}|`` (times an
    integer denominator D; each row moves it by at most D·max(q, 1 - q), the
    sensitivity), then picks the candidate with the lowest score perturbed by
    noise of scale ``s = global_scale · D · max(q, 1 - q)``. By the exponential
    mechanism's utility theorem (which also holds for permute-and-flip, OpenDP's
    pure-DP variant), the released candidate's score exceeds the best one's by
    more than ``s · ln(|C| / alpha)`` with probability at most ``alpha``. Divided
    by D, that is a number of rows, whatever D is.
    """
    return global_scale * max(q, 1 - q) * math.log(n_candidates / alpha)


_MAX_DERIVED = 2.0**53  # beyond this, float arithmetic is no longer exact on integers


@dataclass(frozen=True)
class _Shape:
    type: str  # int, float, bool, text, null
    bounds: tuple[float, float] | None
    nullable: bool


def _shape_of(e: Expr, schema: Schema) -> _Shape:
    """Type, bounds (interval arithmetic over public bounds) and nullability."""
    if isinstance(e, Col):
        spec = schema.column(e.name)
        assert spec is not None
        kind = "text" if spec.type in ("category", "string") else spec.type
        return _Shape(kind, spec.numeric_bounds, spec.nullable)
    if isinstance(e, Lit):
        v = e.value
        if v is None:
            return _Shape("null", None, True)
        if isinstance(v, bool):
            return _Shape("bool", (int(v), int(v)), False)
        if isinstance(v, (int, float)):
            return _Shape("int" if isinstance(v, int) else "float", (v, v), False)
        return _Shape("text", None, False)
    if isinstance(e, (IsIn, UnaryOp)) and not (isinstance(e, UnaryOp) and e.op == "neg"):
        nullable = _shape_of(e.arg, schema).nullable and not (
            isinstance(e, UnaryOp) and e.op in ("is_null", "is_not_null")
        )
        return _Shape("bool", (0, 1), nullable)
    if isinstance(e, UnaryOp):  # neg
        a = _shape_of(e.arg, schema)
        return _Shape(
            a.type, None if a.bounds is None else (-a.bounds[1], -a.bounds[0]), a.nullable
        )
    if isinstance(e, Clip):
        a = _shape_of(e.arg, schema)
        lo, hi = e.lo, e.hi
        if a.bounds is not None:
            lo, hi = min(max(a.bounds[0], e.lo), e.hi), max(min(a.bounds[1], e.hi), e.lo)
        is_int = a.type == "int" and float(e.lo).is_integer() and float(e.hi).is_integer()
        return _Shape("int" if is_int else "float", (lo, hi), a.nullable)
    if isinstance(e, FillNull):
        a = _shape_of(e.arg, schema)
        filled = a.bounds
        if filled is not None and isinstance(e.value, (int, float)):
            filled = (min(filled[0], e.value), max(filled[1], e.value))
        # Polars fills an int column with a float by making it float (the supertype).
        filled_type = "float" if a.type == "int" and isinstance(e.value, float) else a.type
        return _Shape(filled_type, filled, False)
    if isinstance(e, When):
        t, o = _shape_of(e.then, schema), _shape_of(e.otherwise, schema)
        if t.nullable or o.nullable:
            # Compiled to arithmetic (below), a null in the branch not taken would
            # leak into the result; Polars would ignore it. Ask for a fill instead.
            raise PlanError(
                "when/then/otherwise: a branch may be null; fill it first with .fill_null(...)"
            )
        if "bool" not in (t.type, o.type) and (t.bounds is None or o.bounds is None):
            # c·a + (1 - c)·b is exact for finite values only; an unbounded branch
            # may be ±inf, and 0·inf is NaN.
            raise PlanError(
                "when/then/otherwise: a branch has no known bounds; .clip(lo, hi) it first"
            )
        merged = t.type if t.type == o.type else "float"
        hull = None
        if t.bounds is not None and o.bounds is not None:
            hull = (min(t.bounds[0], o.bounds[0]), max(t.bounds[1], o.bounds[1]))
        return _Shape(merged, hull, False)
    if isinstance(e, Cast):
        a = _shape_of(e.arg, schema)
        if a.bounds is None:
            # A float beyond the int range (or ±inf) casts to null.
            return _Shape(e.to, None, a.nullable or e.to == "int")
        lo, hi = a.bounds
        if e.to == "int":  # truncation toward zero is monotone
            return _Shape("int", (int(lo), int(hi)), a.nullable)
        return _Shape("float", (float(lo), float(hi)), a.nullable)
    assert isinstance(e, BinOp)
    left, right = _shape_of(e.left, schema), _shape_of(e.right, schema)
    nullable = left.nullable or right.nullable
    if e.op == "truediv" and _may_be_zero(right):
        nullable = True  # x / 0 is null (see _to_polars)
    if e.op not in ("add", "sub", "mul", "truediv"):
        return _Shape("bool", (0, 1), nullable)
    kind = "int" if left.type == right.type == "int" and e.op != "truediv" else "float"
    if left.bounds is None or right.bounds is None:
        # An operand without bounds may be ±inf (a quotient of a divisor near 0):
        # inf - inf and 0·inf are NaN, which OpenDP would silently impute.
        raise PlanError(
            f"arithmetic ({e.op}) on an expression without known bounds; .clip(lo, hi) it first"
        )
    (p, q), (r, s) = left.bounds, right.bounds
    result: tuple[float, float] | None
    if e.op == "add":
        result = (p + r, q + s)
    elif e.op == "sub":
        result = (p - s, q - r)
    elif e.op == "mul":
        corners = [p * r, p * s, q * r, q * s]
        result = (min(corners), max(corners))
    elif r > 0 or s < 0:  # the divisor's range excludes 0
        corners = [p / r, p / s, q / r, q / s]
        result = (min(corners), max(corners))
    elif right.type in ("int", "bool"):
        # Rows dividing by 0 are null; the other divisors are integers of
        # [r, -1] and [1, s], whose extremes bound the quotient.
        divisors = [d for d in (r, -1, 1, s) if d != 0 and r <= d <= s]
        corners = [x / d for x in (p, q) for d in divisors]
        result = (min(corners), max(corners)) if corners else None
    else:
        result = None  # a float divisor may come arbitrarily close to 0
    return _Shape(kind, result, nullable)


def _may_be_zero(divisor: _Shape) -> bool:
    return divisor.bounds is None or divisor.bounds[0] <= 0 <= divisor.bounds[1]


def with_derived(query: Query, schema: Schema) -> Schema:
    """The schema a query's filters and aggregates see.

    The dataset's columns plus its derived columns, each with derived type,
    bounds and nullability.
    """
    columns = list(schema.columns)
    view = schema
    for name, expr in query.derived:
        if not name.isidentifier() or "__" in name:
            raise PlanError(f"derived column name {name!r} must be an identifier without '__'")
        if view.column(name) is not None:
            raise PlanError(
                f"with_columns: {name!r} already exists; derived columns take new names"
            )
        _expr_kind(expr, view, query.dataset)  # names and types check
        shape = _shape_of(expr, view)
        if shape.type not in ("int", "float", "bool"):
            raise PlanError(f"with_columns({name}=...): derived columns are numbers or booleans")
        if shape.bounds is not None and max(map(abs, shape.bounds)) > _MAX_DERIVED:
            raise PlanError(f"with_columns({name}=...): derived bounds {shape.bounds} are too wide")
        bounds = None
        if shape.type in ("int", "float") and shape.bounds is not None:
            lo, hi = shape.bounds
            bounds = (lo, hi) if lo < hi else (lo, lo + 1)  # a constant column
            if shape.type == "int":
                bounds = (int(bounds[0]), int(bounds[1]))
            else:  # OpenDP picks the sum's type from its bounds' type
                bounds = (float(bounds[0]), float(bounds[1]))
        spec = ColumnSpec(name, shape.type, bounds, None, shape.nullable)  # type: ignore[arg-type]
        columns.append(spec)
        view = dataclasses.replace(schema, columns=tuple(columns))
    return view


def validate(query: Query, schema: Schema) -> None:
    """Check a query against the public schema.

    Raises:
        PlanError: naming the column or construct at fault.
    """
    ds = query.dataset
    ident = schema.privacy_unit.identifier
    base = {c.name for c in schema.columns}
    schema = with_derived(query, schema)
    for g in query.group_by:
        spec = schema.column(g)
        if g in base or spec is None or query.bins is not None or spec.keys is not None:
            continue
        # A derived column's values are not declared anywhere: only keys that
        # follow from its type and derived bounds are public.
        raise PlanError(
            f"cannot group by the derived column {g!r}: its keys are not public; group on a "
            "boolean, or on an int column whose derived bounds span at most "
            f"{MAX_INT_KEYS:,} values (clip it, or build it with when/then), or use "
            f"histogram({g!r}, bins=[...])"
        )
    for f in query.filters:
        if _expr_kind(f, schema, ds) != "boolean":
            raise PlanError("filter(...) needs a condition, e.g. col('age') >= 18")
    n_groups = 1
    for g in query.group_by:
        spec = _column(schema, ds, g)
        if query.bins is not None:
            if spec.type not in ("int", "float"):
                raise PlanError(
                    f"histogram({g!r}, bins=...): bin edges apply to int and float columns; "
                    f"{g!r} is {spec.type}: omit bins to count per declared value"
                )
            if g == ident:
                raise PlanError(f"{g!r} identifies people (the privacy unit); it cannot be binned")
            n_groups *= len(query.bins) + 1
            continue
        if g == ident:
            raise PlanError(f"{g!r} identifies people (the privacy unit); it cannot be grouped on")
        if spec.keys is None:
            if spec.type == "float":
                raise PlanError(
                    f"cannot group by {g!r}: its keys are not public (a float column has none); "
                    f"for counts per range use histogram({g!r}, bins=[...])"
                )
            if spec.type not in ("string", "int"):
                raise PlanError(
                    f"cannot group by {g!r}: its keys are not public, and only string and int "
                    "columns (other than the privacy unit) can have their keys released by "
                    "thresholding"
                )
            if not any(a.op == "count" for a in query.aggs):
                raise PlanError(
                    f"grouping by {g!r}, whose keys are not public, releases the keys whose "
                    "noisy count passes a threshold: include count() in agg(...)"
                )
            continue  # how many keys pass is unknown before release
        n_groups *= len(spec.keys)
    if n_groups > MAX_GROUPS:
        raise PlanError(f"grouping yields {n_groups} groups, more than {MAX_GROUPS}")
    if n_groups * len(query.aggs) > MAX_RELEASED_VALUES:
        # Refused here, before the debit: a release too large to hand back would
        # be charged and then lost.
        raise PlanError(
            f"this release would hold {n_groups * len(query.aggs)} values "
            f"({n_groups} groups x {len(query.aggs)} aggregates), more than {MAX_RELEASED_VALUES}"
        )
    total_candidates = 0
    for a in query.aggs:
        if "__" in a.alias:
            # Reserved: a mean or variance compiles to hidden columns ALIAS__sum, ...
            raise PlanError(f"aggregate name {a.alias!r} must not contain '__'")
        if not a.alias.isidentifier():
            raise PlanError(f"aggregate name {a.alias!r} must be a valid identifier")
        if a.column is None:
            continue
        spec = _column(schema, ds, a.column)
        if a.column == ident:
            raise PlanError(
                f"{a.column!r} identifies people (the privacy unit); {a.op}() cannot use it"
            )
        if not spec.is_numeric:
            raise PlanError(f"{a.op}({a.column!r}): column is {spec.type}, not numeric")
        if spec.nullable:
            raise PlanError(
                f"{a.op}({a.column!r}): the column may hold nulls (missing values, or "
                "a division by 0, which gives null); fill them first, e.g. "
                f"with_columns({a.column}_filled=col({a.column!r}).fill_null(0))"
            )
        if a.op == "quantile":
            total_candidates += len(candidates(a, spec))
        else:
            _agg_bounds(a, spec)
    if total_candidates > MAX_PLAN_CANDIDATES:
        raise PlanError(
            f"this plan's quantiles choose among {total_candidates} candidates in all, more "
            f"than the {MAX_PLAN_CANDIDATES} one release may have (pricing is checked before "
            "anything is charged, and its cost grows with them); split the quantiles over "
            "several releases or pass fewer candidates"
        )


# --- 2. pricing -----------------------------------------------------------------------


def _input_domain(schema: Schema, group_by: tuple[str, ...], binned: bool) -> Any:
    series = []
    for c in schema.columns:
        atom = {
            "int": lambda: dp.atom_domain(T=dp.i64),
            "float": lambda: dp.atom_domain(T=dp.f64, nan=False),
            "bool": lambda: dp.atom_domain(T=bool),
            "category": lambda: dp.atom_domain(T=dp.String),
            "string": lambda: dp.atom_domain(T=dp.String),
        }[c.type]()
        if c.nullable or c.type in ("category", "string"):
            # OpenDP models Polars string columns as nullable.
            atom = dp.option_domain(atom)
        series.append(dp.series_domain(c.name, atom))
    domain = dp.lazyframe_domain(series)
    # max_length is the public max_rows: OpenDP needs it to bound float rounding in sums.
    domain = dp.with_margin(domain, dp.polars.Margin(by=[], max_length=schema.max_rows))
    if group_by and not binned and all(schema.column(g) is not None for g in group_by):
        # (A histogram only counts, and its keys are derived: no margin needed. Nor
        # can one be declared for a derived column, which the input does not have.)
        margin = dp.polars.Margin(
            by=[pl.col(g) for g in group_by],
            max_length=schema.max_rows,
            max_groups=_max_groups(schema, group_by),
        )
        domain = dp.with_margin(domain, margin)
    return domain


def _max_groups(schema: Schema, group_by: tuple[str, ...]) -> int:
    """A public bound on the number of groups; float sums need it for rounding error.

    Public keys: their number. Otherwise the columns' declared ``max_keys``, or at
    worst one group per row (valid, but it makes float sums per group far noisier).
    """
    total = 1
    for g in group_by:
        spec = schema.column(g)
        assert spec is not None
        keys = spec.keys
        if keys is not None:
            total *= len(keys) + (1 if spec.nullable else 0)  # null is a group too
        else:
            total *= spec.max_keys or schema.max_rows
    return min(total, schema.max_rows)


def _to_polars(e: Expr, view: Schema) -> pl.Expr:
    """The Polars form of a validated expression; ``view`` has the derived columns."""
    if isinstance(e, Col):
        return pl.col(e.name)
    if isinstance(e, Lit):
        return pl.lit(e.value)
    if isinstance(e, UnaryOp):
        inner = _to_polars(e.arg, view)
        return {
            "not": lambda: ~inner,
            # OpenDP 0.16 does not recognise Polars' negate(); 0 - x is the same value.
            "neg": lambda: pl.lit(0) - inner,
            "is_null": inner.is_null,
            "is_not_null": inner.is_not_null,
        }[e.op]()
    if isinstance(e, Clip):
        arg = _to_polars(e.arg, view)
        if _shape_of(e, view).type == "float" and _shape_of(e.arg, view).type == "int":
            # Polars would truncate float bounds to the int column's type.
            arg = arg.cast(pl.Float64)
        return arg.clip(e.lo, e.hi)
    if isinstance(e, FillNull):
        arg = _to_polars(e.arg, view)
        if isinstance(e.value, float) and _shape_of(e.arg, view).type == "int":
            # Make the float explicit, or OpenDP would analyse an int while Polars
            # computes a float (its supertype).
            arg = arg.cast(pl.Float64)
        return arg.fill_null(pl.lit(e.value))
    if isinstance(e, Cast):
        return _to_polars(e.arg, view).cast(pl.Int64 if e.to == "int" else pl.Float64)
    if isinstance(e, When):
        # OpenDP 0.16 does not support Polars' when/then; with c the condition as 0/1
        # (null as 0), c·a + (1 - c)·b is exactly a or b (one term is an exact 0, and
        # validation refused nullable branches). Booleans: (c & a) | (~c & b).
        cond = _to_polars(e.cond, view).fill_null(pl.lit(False))
        then, other = _to_polars(e.then, view), _to_polars(e.otherwise, view)
        if _shape_of(e.then, view).type == "bool":
            return (cond & then) | (~cond & other)
        c = cond.cast(pl.Int64)
        return c * then + (pl.lit(1) - c) * other
    if isinstance(e, IsIn):
        # OpenDP 0.16 does not support Polars' is_in; an OR of equalities is the same
        # row set. None in the list matches nulls, as a researcher listing it means.
        arg = _to_polars(e.arg, view)
        terms = [arg.is_null() if v is None else arg == pl.lit(v) for v in e.values]
        return functools.reduce(operator.or_, terms, pl.lit(False))
    left, right = _to_polars(e.left, view), _to_polars(e.right, view)
    if e.op == "truediv" and _may_be_zero(_shape_of(e.right, view)):
        # Polars would give ±inf or NaN for x / 0, and OpenDP would then silently
        # impute NaN; a null instead falls under the explicit fill_null rule.
        right = right.replace(0, None)
    ops = {
        "add": left.__add__,
        "sub": left.__sub__,
        "mul": left.__mul__,
        "truediv": left.__truediv__,
        "eq": left.__eq__,
        "ne": left.__ne__,
        "lt": left.__lt__,
        "le": left.__le__,
        "gt": left.__gt__,
        "ge": left.__ge__,
        "and": left.__and__,
        "or": left.__or__,
    }
    result: pl.Expr = ops[e.op](right)
    return result


def bin_labels(edges: tuple[float, ...]) -> list[str]:
    """Names of the bins cut by ``edges``: every value falls in exactly one.

    >>> bin_labels((0, 10))
    ['< 0', '[0, 10)', '>= 10']
    """
    inner = [f"[{_num(a)}, {_num(b)})" for a, b in itertools.pairwise(edges)]
    return [f"< {_num(edges[0])}", *inner, f">= {_num(edges[-1])}"]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def has_private_keys(query: Query, schema: Schema) -> bool:
    """Whether the plan groups on a column without public keys (keys cost δ)."""
    return query.bins is None and any(
        (spec := schema.column(g)) is not None and spec.keys is None for g in query.group_by
    )


def _group_keys(query: Query, schema: Schema) -> list[tuple[Any, ...]]:
    if query.bins is not None:
        return [(label,) for label in bin_labels(query.bins)]
    view = with_derived(query, schema)  # derived columns' keys follow from their bounds
    key_lists = []
    for g in query.group_by:
        spec = view.column(g)
        assert spec is not None
        # Null is a group of its own, so that rows with a missing key are not dropped.
        key_lists.append((*(spec.keys or ()), *((None,) if spec.nullable else ())))
    return list(itertools.product(*key_lists))


def _square_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    lo, hi = bounds
    if lo >= 0:
        return (lo * lo, hi * hi)
    if hi <= 0:
        return (hi * hi, lo * lo)
    return (0 * lo, max(lo * lo, hi * hi))  # 0 * lo keeps the int/float type


def _lazy_plan(query: Query, schema: Schema) -> pl.LazyFrame:
    lf = pl.LazyFrame(schema={c.name: _POLARS_TYPES[c.type] for c in schema.columns})
    view = with_derived(query, schema)
    if query.derived:
        lf = lf.with_columns(*(_to_polars(e, view).alias(name) for name, e in query.derived))
    for f in query.filters:
        lf = lf.filter(_to_polars(f, view))
    exprs: list[pl.Expr] = []
    for a in query.aggs:
        if a.op == "count":
            exprs.append(dp.len(signed=False).alias(a.alias))
            continue
        spec = view.column(a.column)  # type: ignore[arg-type]
        assert spec is not None
        column = pl.col(spec.name)
        if a.op == "quantile":
            # The exponential mechanism over public candidates: no clamp is needed,
            # a value beyond the candidates only counts as below or above them all.
            assert a.q is not None
            quant = column.dp.quantile(a.q, list(candidates(a, spec)))  # type: ignore[attr-defined]
            exprs.append(quant.alias(a.alias))
            continue
        bounds = _agg_bounds(a, spec)
        if spec.type == "bool":
            column = column.cast(pl.Int64)
        if a.op == "sum":
            exprs.append(column.dp.sum(bounds).alias(a.alias))  # type: ignore[attr-defined]
            continue
        # mean = noisy sum / noisy count; variance and std add a noisy sum of
        # squares of the clamped values. All parts are in this one measurement.
        exprs.append(column.dp.sum(bounds).alias(f"{a.alias}__sum"))  # type: ignore[attr-defined]
        exprs.append(dp.len(signed=False).alias(f"{a.alias}__len"))
        if a.op in ("variance", "std"):
            clamped = column.clip(*bounds)
            squares = (clamped * clamped).dp.sum(_square_bounds(bounds))  # type: ignore[attr-defined]
            exprs.append(squares.alias(f"{a.alias}__sq"))
    if not query.group_by:
        return lf.select(exprs)
    key_types = {g: _POLARS_TYPES[view.column(g).type] for g in query.group_by}  # type: ignore[union-attr]
    if query.bins is not None:
        [g] = query.group_by
        labels = bin_labels(query.bins)
        key_types[g] = pl.String
        lf = lf.with_columns(
            pl.col(g).cut(list(query.bins), labels=labels, left_closed=True).cast(pl.String)
        )
    if has_private_keys(query, schema):
        # OpenDP thresholds on the first count of the plan: make it the researcher's
        # count(), so the released count is the one that passed the threshold.
        first = next(i for i, a in enumerate(query.aggs) if a.op == "count")
        position = sum(len(PARTS.get(a.op, (a.op,))) for a in query.aggs[:first])
        exprs.insert(0, exprs.pop(position))
    grouped = lf.group_by(list(query.group_by)).agg(exprs)
    if has_private_keys(query, schema):
        # OpenDP releases only the keys whose noisy count passes the threshold.
        return grouped
    keys = pl.LazyFrame(_group_keys(query, schema), schema=key_types, orient="row")
    # Left join from the public key set: every public key appears (absent ones as
    # noisy zeros) and no key is learned from the data.
    return keys.join(grouped, how="left", on=list(query.group_by), nulls_equal=True)


Builder = Callable[[float, "int | None"], Any]


def _names_in(e: Expr) -> set[str]:
    if isinstance(e, Col):
        return {e.name}
    if isinstance(e, Lit):
        return set()
    if isinstance(e, BinOp):
        return _names_in(e.left) | _names_in(e.right)
    if isinstance(e, When):
        return _names_in(e.cond) | _names_in(e.then) | _names_in(e.otherwise)
    return _names_in(e.arg)


def columns_read(query: Query, schema: Schema) -> tuple[str, ...]:
    """The dataset's columns a plan reads, in schema order.

    Scanning only these is a projection (rows are kept, so neighbouring datasets
    stay neighbours) and it matters: OpenDP reads every column it is handed
    (measured: a count over 1M rows of the 11-column demo table takes 47 ms on all
    columns, 5 ms on one). A plan that reads no column (a bare count) still needs
    one to count rows: the narrowest non-nullable one.
    """
    names: set[str] = set(query.group_by)
    for expr in (*query.filters, *(e for _n, e in query.derived)):
        names |= _names_in(expr)
    names |= {a.column for a in query.aggs if a.column is not None}
    read = tuple(c.name for c in schema.columns if c.name in names)
    if read:
        return read
    cheapest = {"bool": 0, "int": 1, "float": 1, "category": 2, "string": 3}
    candidates = [c for c in schema.columns if not c.nullable] or list(schema.columns)
    return (min(candidates, key=lambda c: cheapest[c.type]).name,)


def _builder(query: Query, schema: Schema) -> Builder:
    """Measurements of ``query`` at any scale and threshold.

    The input domain and the Polars plan do not depend on either, so calibration
    (two builds, or ~20 for a threshold search) makes them once. Both cover only
    the columns the plan reads (`columns_read`), which evaluation scans alone.
    """
    schema = dataclasses.replace(
        schema,
        columns=tuple(schema.column(c) for c in columns_read(query, schema)),  # type: ignore[misc]
    )
    domain = _input_domain(schema, query.group_by, query.bins is not None)
    plan = _lazy_plan(query, schema)

    measure = dp.zero_concentrated_divergence() if schema.zcdp else dp.max_divergence()
    # Rows added or removed; with a person identifier, per-grouping bounds on them.
    metric = dp.symmetric_distance()
    if schema.privacy_unit.identifier is not None:
        metric = dp.frame_distance(metric)

    def build(scale: float, threshold: int | None = None) -> Any:
        return dp.m.make_private_lazyframe(
            domain,
            metric,
            dp.approximate(measure) if threshold is not None else measure,
            plan,
            global_scale=scale,
            threshold=threshold,
        )

    return build


def _build(query: Query, schema: Schema, scale: float, threshold: int | None = None) -> Any:
    return _builder(query, schema)(scale, threshold)


def _d_in(query: Query, schema: Schema) -> Any:
    """How far one person moves the data: the privacy unit, in OpenDP's terms.

    A row privacy unit: one row. A person identifier: at most
    ``max_rows_per_person`` rows (registration truncates to it), and, grouping
    on columns with ``max_groups_per_person``, at most that many groups, which
    OpenDP uses for the threshold of private keys (δ) and for Gaussian noise.
    """
    unit = schema.privacy_unit
    if unit.identifier is None:
        return 1
    k = unit.max_rows_per_person
    bounds = [dp.polars.Bound(by=[], per_group=k)]
    if query.group_by and query.bins is None:
        limits = [
            spec.max_groups_per_person if (spec := schema.column(g)) is not None else None
            for g in query.group_by
        ]
        if any(limits):
            groups = min(k, math.prod(limit or k for limit in limits))
            by = [pl.col(g) for g in query.group_by]
            bounds.append(dp.polars.Bound(by=by, per_group=k, num_groups=groups))
    return bounds


def _loss(measurement: Any, d_in: Any, private: bool) -> tuple[float, float]:
    loss = measurement.map(d_in)
    return (float(loss[0]), float(loss[1])) if private else (float(loss), 0.0)


def _calibrate_threshold(
    build: Builder, schema: Schema, scale: float, d_in: Any, target_delta: float
) -> int:
    """Smallest threshold whose δ is within ``target_delta`` (δ falls as it grows)."""

    def delta_at(t: int) -> float:
        return _loss(build(scale, t), d_in, True)[1]

    rows = schema.privacy_unit.max_rows_per_person  # a threshold below it protects no one
    high = rows + 1
    while delta_at(high) > target_delta:
        if high > schema.max_rows:
            measure = "rho" if schema.zcdp else "epsilon"
            raise PlanError(
                f"delta={target_delta:.3g} is too small for this {measure}: releasing a key "
                f"would need a noisy count above max_rows={schema.max_rows}; raise delta or "
                f"{measure}"
            )
        high *= 2
    low = high // 2 if high > rows + 1 else rows
    while high - low > 1:  # invariant: delta_at(high) <= target < delta_at(low) (or low = rows)
        mid = (low + high) // 2
        if delta_at(mid) <= target_delta:
            high = mid
        else:
            low = mid
    return high


def _half_width(row: dict[str, Any], alpha: float) -> float:
    """OpenDP's accuracy for a summary row, recomputed where it is not finite.

    At very small noise scales (very large ε) OpenDP's discrete-Laplace accuracy
    overflows to -inf; the distribution is then known exactly: for scale b and
    q = e^(-1/b), P(|X| > k) = 2 q^(k+1) / (1 + q).
    """
    half = float(row["accuracy"])
    if math.isfinite(half) and half >= 0:
        return half
    scale = float(row["scale"])
    if "Gaussian" in str(row["distribution"]):
        # The discrete Gaussian's tails are no heavier than the continuous one's.
        half = scale * statistics.NormalDist().inv_cdf(1 - alpha / 2)
        return float(math.ceil(half)) if "Integer" in str(row["distribution"]) else half
    if "Integer" not in str(row["distribution"]):
        return scale * math.log(1 / alpha)  # continuous Laplace
    q = math.exp(-1 / scale) if scale > 0 else 0.0
    if q == 0.0:
        return 0.0
    return float(max(0, math.ceil(math.log(alpha * (1 + q) / 2) / math.log(q)) - 1))


def _largest_float_within(amount: Decimal) -> float:
    value = float(amount)
    while Decimal(value) > amount:
        value = math.nextafter(value, 0.0)
    return value


@functools.lru_cache(maxsize=4096)  # job listings convert the same few amounts over and over
def zcdp_epsilon(rho: Decimal, delta: float) -> float:
    """The ε at which ρ-zCDP implies (ε, δ)-DP, by OpenDP's conversion.

    Shown beside every ρ so that users can compare with pure-DP budgets. The
    conversion is OpenDP's (tighter than the textbook ρ + 2·sqrt(ρ·ln(1/δ))),
    applied to a Gaussian mechanism whose ρ is exactly ``rho``.
    """
    if rho <= 0:
        return 0.0
    gaussian = dp.m.make_gaussian(
        dp.atom_domain(T=float, nan=False),
        dp.absolute_distance(T=float),
        scale=1 / math.sqrt(2 * float(rho)),
    )
    try:
        profile = dp.c.make_zCDP_to_approxDP(gaussian).map(1.0)
        return float(profile.epsilon(delta))
    except dp.OpenDPException:  # the conversion overflows beyond rho ~ 70,000
        return math.inf


class _PriceCache:
    """Priced plans by (plan, public schema, amount, δ): researchers iterate.

    Pricing builds the OpenDP measurement twice and summarises it (2-8 ms of
    host CPU per release, more than a count's evaluation on a million rows),
    and depends on nothing but these four (no data is read), so a plan shape
    released again at the same cost reuses its measurement. OpenDP
    measurements are immutable; one may be invoked by several threads.
    """

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[Any, ...], PricedQuery] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> PricedQuery | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
            return hit

    def put(self, key: tuple[Any, ...], priced: PricedQuery) -> None:
        with self._lock:
            self._entries[key] = priced
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


PRICES = _PriceCache()


def price(
    query: Query,
    dataset: DatasetHandle,
    amount: Decimal,
    delta: Decimal = Decimal(0),
    owner: str = "",
) -> PricedQuery:
    """Calibrate the measurement of ``query`` to cost exactly ``amount``. No data is read.

    ``amount`` is in the dataset's measure: ε on a pure-DP dataset, ρ on a zCDP
    one. A plan that releases private group keys also spends exactly ``delta``:
    the threshold is the smallest whose δ is within it. A plan priced before on
    the same public schema at the same cost comes from `PRICES`, for this
    dataset handle (file and clamps). Entries are per ``owner`` (the
    researcher): whether a plan was priced before shows in how fast it is
    priced, and one researcher must not learn that of another's plans.

    Raises:
        PlanError: the plan does not fit the schema, or OpenDP refuses it.
    """
    key = (owner, query, dataset.schema, amount, delta)
    cached = PRICES.get(key)
    if cached is not None:
        return dataclasses.replace(cached, dataset=dataset)
    priced = _price(query, dataset, amount, delta)
    PRICES.put(key, priced)
    return priced


def _price(query: Query, dataset: DatasetHandle, amount: Decimal, delta: Decimal) -> PricedQuery:
    schema = dataset.schema
    validate(query, schema)
    private = has_private_keys(query, schema)
    if private and delta <= 0:
        raise PlanError(
            "this plan groups on a column whose keys are not public: the keys are released "
            "by thresholding, which costs delta; pass e.g. release(plan, "
            f"{'rho=0.1' if schema.zcdp else 'epsilon=1'}, delta=1e-7)"
        )
    if not private and delta > 0:
        raise PlanError(
            "delta is spent only when releasing group keys that are not public; "
            "this plan has none, so pass no delta"
        )
    d_in = _d_in(query, schema)
    target = _largest_float_within(amount)
    # ε falls as 1/scale (Laplace), ρ as 1/scale² (Gaussian).
    power = 2.0 if schema.zcdp else 1.0
    # The ε part does not depend on the threshold; any valid one will do to calibrate it.
    probe = schema.max_rows if private else None
    threshold: int | None = None
    try:
        build = _builder(query, schema)
        unit_loss = _loss(build(1.0, probe), d_in, private)[0]
        scale = (unit_loss / target) ** (1 / power)
        for _ in range(64):
            if _loss(build(scale, probe), d_in, private)[0] <= target:
                break
            scale = math.nextafter(scale, math.inf) * (1 + 1e-12)
        else:  # pragma: no cover - the map is linear in 1/scale
            raise PlanError("could not calibrate the noise to the requested privacy loss")
        if private:
            threshold = _calibrate_threshold(
                build, schema, scale, d_in, _largest_float_within(delta)
            )
        measurement = build(scale, threshold)
        eps_spent, delta_spent = _loss(measurement, d_in, private)
        if eps_spent > target or delta_spent > float(delta):  # pragma: no cover - a guard
            raise PlanError("the noise calibration did not verify; nothing was charged")
        summary = summarize_polars_measurement(measurement, 1 - CONFIDENCE)
        view = with_derived(query, schema)
        quantiles = {a.alias: a for a in query.aggs if a.op == "quantile"}
        accuracy = {}
        for row in summary.iter_rows(named=True):
            alias = row["column"]
            if alias in quantiles:
                # OpenDP gives no accuracy for a quantile, and its scale is in units
                # of an internal score; both are stated here in rows of rank.
                a = quantiles[alias]
                spec = view.column(a.column)  # type: ignore[arg-type]
                assert spec is not None
                assert a.q is not None
                n = len(candidates(a, spec))
                half = rank_error(a.q, n, scale, 1 - CONFIDENCE)
                accuracy[alias] = (row["distribution"], scale * max(a.q, 1 - a.q), half)
            else:
                half = _half_width(row, 1 - CONFIDENCE)
                accuracy[alias] = (row["distribution"], float(row["scale"]), half)
        part_accuracy: dict[str, float] = {}
        for k in sorted({len(PARTS[a.op]) for a in query.aggs if a.op in PARTS}):
            split = summarize_polars_measurement(measurement, (1 - CONFIDENCE) / k)
            alpha = (1 - CONFIDENCE) / k
            at_k = {
                row["column"]: _half_width(row, alpha)
                for row in split.iter_rows(named=True)
                if row["column"] not in quantiles  # no part of a mean; no accuracy either
            }
            for a in query.aggs:
                if len(PARTS.get(a.op, ())) == k:
                    for part in PARTS[a.op]:
                        part_accuracy[f"{a.alias}__{part}"] = at_k[f"{a.alias}__{part}"]
    except PlanError:
        raise
    except Exception as err:  # OpenDP refused the plan: depends only on plan and schema
        if private and "Overflow" in str(err):
            measure = "rho" if schema.zcdp else "epsilon"
            raise PlanError(
                f"{measure}={amount} is too large for OpenDP's analysis of released group keys "
                f"(its bounds overflow); use a smaller {measure}, e.g. at most 100"
            ) from err
        raise PlanError(f"OpenDP cannot build this plan: {err}") from err
    epsilon, rho = (Decimal(0), amount) if schema.zcdp else (amount, Decimal(0))
    return PricedQuery(
        query,
        dataset,
        epsilon,
        scale,
        delta,
        measurement,
        accuracy,
        part_accuracy,
        threshold,
        rho,
        d_in,
    )


# --- 3. evaluation ----------------------------------------------------------------------


def _released(
    agg: Agg, row: dict[str, Any], priced: PricedQuery, spec: ColumnSpec | None
) -> dict[str, Any]:
    if agg.op in ("count", "sum"):
        distribution, scale, half = priced.accuracy[agg.alias]
        raw = row[agg.alias]
        value: float | int = int(raw) if "Integer" in distribution else float(raw)
        lo = value - half
        if agg.op == "count":
            lo = max(lo, 0)
        return {
            "value": value,
            "ci95": [lo, value + half],
            "aggregate": agg.op,
            "column": agg.column,
            "mechanism": distribution,
            "noise_scale": scale,
        }
    assert spec is not None
    if agg.op == "quantile":
        distribution, scale, rows = priced.accuracy[agg.alias]
        raw = row[agg.alias]
        return {
            "value": int(raw) if spec.type == "int" else float(raw),
            # No interval in the column's units exists without spending more: how far
            # the answer is from the true quantile in value depends on the data.
            "ci95": None,
            "rank_error": rows,
            "q": agg.q,
            "aggregate": "quantile",
            "column": agg.column,
            "mechanism": distribution,
            "noise_scale": scale,
        }
    bounds = _agg_bounds(agg, spec)
    if agg.op in ("variance", "std"):
        return _spread(agg, row, priced, bounds)
    total, count = float(row[f"{agg.alias}__sum"]), float(row[f"{agg.alias}__len"])
    a_sum = priced.part_accuracy[f"{agg.alias}__sum"]
    a_len = priced.part_accuracy[f"{agg.alias}__len"]
    value = float(min(max(total / max(count, 1.0), bounds[0]), bounds[1]))
    # With probability ≥ 95% (union bound over two 97.5% intervals) the true sum and
    # count lie in their boxes; the true mean then lies between the extreme ratios.
    if count - a_len >= 1:
        corners = [
            s / n for s in (total - a_sum, total + a_sum) for n in (count - a_len, count + a_len)
        ]
        # Both ends clamped into the bounds (the true mean lies in them): the interval
        # is the corners' range cut to the bounds when they meet, and when a noisy
        # sum far outside puts every corner beyond one bound, the bound itself, never
        # an interval with lo > hi (which clamping only the near ends once gave).
        lo, hi = (float(min(max(c, bounds[0]), bounds[1])) for c in (min(corners), max(corners)))
    else:
        lo, hi = float(bounds[0]), float(bounds[1])
    return {
        "value": value,
        "ci95": [lo, hi],
        "aggregate": "mean",
        "column": agg.column,
        "mechanism": composite_mechanism("mean", priced.accuracy[f"{agg.alias}__sum"][0]),
        "noise_scale": priced.accuracy[f"{agg.alias}__sum"][1],
    }


def composite_mechanism(op: str, distribution: str) -> str:
    """How an aggregate made of several noisy statistics was released.

    >>> composite_mechanism("mean", "Float Laplace")
    'noisy sum / noisy count (Float Laplace)'
    """
    parts = "noisy sum / noisy count" if op == "mean" else "noisy sum of squares, sum and count"
    return f"{parts} ({distribution})"


def _spread(
    agg: Agg, row: dict[str, Any], priced: PricedQuery, bounds: tuple[float, float]
) -> dict[str, Any]:
    """Sample variance (or its square root) from noisy n, sum and sum of squares.

    var = (Q - S²/n) / (n - 1), kept within [0, W·n/(n - 1)] where W = (hi - lo)²/4
    is the largest population variance of a variable clamped to [lo, hi] (the
    sample variance can exceed it by n/(n - 1)). The interval takes the extremes
    of the formula over the box where n, S and Q each lie within their own
    1 - 5%/3 interval, so it covers with probability >= 95% (union bound).
    """
    n = float(row[f"{agg.alias}__len"])
    s = float(row[f"{agg.alias}__sum"])
    q = float(row[f"{agg.alias}__sq"])
    a_n, a_s, a_q = (priced.part_accuracy[f"{agg.alias}__{p}"] for p in ("len", "sum", "sq"))
    widest = (float(bounds[1]) - float(bounds[0])) ** 2 / 4

    def clamp(v: float, count: float) -> float:
        # For n >= 2 rows, n/(n-1) <= 2; a smaller known count gives a tighter cap.
        return min(max(v, 0.0), widest * (count / (count - 1) if count > 1 else 2.0))

    value = clamp((q - s * s / n) / (n - 1), n) if n > 1 else widest
    n_lo, n_hi = n - a_n, n + a_n
    if n_lo > 1:
        s_lo, s_hi = s - a_s, s + a_s
        s2_max = max(s_lo * s_lo, s_hi * s_hi)
        s2_min = 0.0 if s_lo <= 0 <= s_hi else min(s_lo * s_lo, s_hi * s_hi)
        num_lo, num_hi = q - a_q - s2_max / n_lo, q + a_q - s2_min / n_hi
        lo = num_lo / (n_hi - 1) if num_lo >= 0 else num_lo / (n_lo - 1)
        hi = num_hi / (n_lo - 1) if num_hi >= 0 else num_hi / (n_hi - 1)
        # The true count is >= n_lo inside the box, so n/(n-1) <= n_lo/(n_lo-1).
        lo, hi = clamp(lo, n_lo), clamp(hi, n_lo)
    else:
        lo, hi = 0.0, 2 * widest
    if agg.op == "std":
        value, lo, hi = math.sqrt(value), math.sqrt(lo), math.sqrt(hi)
    return {
        "value": value,
        "ci95": [lo, hi],
        "aggregate": agg.op,
        "column": agg.column,
        "mechanism": composite_mechanism(agg.op, priced.accuracy[f"{agg.alias}__sum"][0]),
        "noise_scale": priced.accuracy[f"{agg.alias}__sum"][1],
    }


def evaluate(priced: PricedQuery) -> Any:
    """Run the priced measurement on the dataset. Call only after the debit is committed.

    Returns:
        The release in the query's shape: one value, a record alias → value, or
        a list of rows for a grouped query, in public key order.

    Raises:
        EvaluationFailed: with a fixed message; the real error goes to the server log.
    """
    # Everything from the scan to the last post-processing step is under one
    # handler: any exception raised after the data was touched may carry data.
    try:
        return _evaluate(priced)
    except Exception:
        log.exception("evaluation failed on dataset %s", priced.dataset.name)
        raise EvaluationFailed() from None


def _evaluate(priced: PricedQuery) -> Any:
    query, schema = priced.query, priced.dataset.schema
    read = columns_read(query, schema)
    scan = pl.scan_parquet(priced.dataset.path).select(read)
    clamps = [pl.col(c).clip(lo, hi) for c, lo, hi in priced.dataset.clamps if c in read]
    if clamps:
        # A provider's narrower bounds: the data must obey what the view declares.
        scan = scan.with_columns(clamps)
    rows = priced.measurement(scan).collect().to_dicts()
    by_key = {tuple(r[g] for g in query.group_by): r for r in rows}
    view = with_derived(query, schema)
    specs = {a.alias: view.column(a.column) if a.column else None for a in query.aggs}

    def value(key: tuple[Any, ...], agg: Agg) -> dict[str, Any]:
        return _released(agg, by_key[key], priced, specs[agg.alias])

    if priced.threshold is None:
        return _shaped(query, schema, value)
    # Private keys: the released ones, in key order. If there are more than a
    # release can carry, the largest noisy counts are kept (post-processing).
    counter = next(a.alias for a in query.aggs if a.op == "count")
    keys = sorted(by_key, key=lambda k: (-float(by_key[k][counter]), _key_order(k)))
    keys = sorted(keys[: max(1, MAX_RELEASED_VALUES // len(query.aggs))], key=_key_order)
    table = []
    for key in keys:
        out: dict[str, Any] = dict(zip(query.group_by, key, strict=True))
        out.update({a.alias: value(key, a) for a in query.aggs})
        out[counter]["threshold"] = priced.threshold
        table.append(out)
    return table


def suppress(release: Any, query: Query, min_count: int) -> Any:
    """Blank out cells whose noisy count is below ``min_count`` (the provider's policy).

    Post-processing of released values only, so it costs nothing and reveals
    nothing more; a suppressed cell keeps its key, aggregate and mechanism, and
    says why it has no value. The count deciding is the plan's first ``count()``.
    """
    counter = next((a.alias for a in query.aggs if a.op == "count"), None)
    if counter is None:
        return release

    def cells(record: dict[str, Any]) -> dict[str, Any]:
        if record[counter]["value"] >= min_count:
            return record
        out = dict(record)
        for a in query.aggs:
            cell = {k: v for k, v in record[a.alias].items() if k not in ("value", "ci95")}
            out[a.alias] = cell | {"value": None, "ci95": None, "suppressed": min_count}
        return out

    if query.shape == "table":
        return [cells(row) for row in release]
    if query.shape == "record":
        return cells(release)
    return cells({counter: release})[counter]


def _key_order(key: tuple[Any, ...]) -> tuple[tuple[bool, Any], ...]:
    return tuple((k is None, "" if k is None else k) for k in key)


def _shaped(
    query: Query, schema: Schema, value: Callable[[tuple[Any, ...], Agg], dict[str, Any]]
) -> Any:
    """Arrange per-(group key, aggregate) values in the query's shape."""

    def record(key: tuple[Any, ...]) -> dict[str, Any]:
        return {a.alias: value(key, a) for a in query.aggs}

    if query.shape == "scalar":
        return record(())[query.aggs[0].alias]
    if query.shape == "record":
        return record(())
    table = []
    for key in _group_keys(query, schema):
        out: dict[str, Any] = dict(zip(query.group_by, key, strict=True))
        out.update(record(key))
        table.append(out)
    return table


def placeholder(priced: PricedQuery) -> Any:
    """What the cost-only host answers: the release's shape, with placeholder values.

    Nothing here comes from the data. Counts are 1 and sums and means the middle of
    their bounds, so that a script's post-processing (ratios, shares) runs through.
    """
    query, schema = priced.query, priced.dataset.schema
    if priced.threshold is not None:
        return []  # which private keys pass the threshold is known only from the data

    def value(_key: tuple[Any, ...], agg: Agg) -> dict[str, Any]:
        if agg.op == "count":
            number: float = 1
            distribution, scale, _half = priced.accuracy[agg.alias]
        else:
            spec = with_derived(query, schema).column(agg.column)  # type: ignore[arg-type]
            assert spec is not None
            if agg.op == "quantile":
                grid = candidates(agg, spec)
                distribution, scale, rows = priced.accuracy[agg.alias]
                return {
                    "value": grid[len(grid) // 2],
                    "ci95": None,
                    "rank_error": rows,
                    "q": agg.q,
                    "aggregate": "quantile",
                    "column": agg.column,
                    "mechanism": distribution,
                    "noise_scale": scale,
                    "placeholder": True,
                }
            lo, hi = _agg_bounds(agg, spec)
            number = (lo + hi) // 2 if agg.op == "sum" and spec.type != "float" else (lo + hi) / 2
            if agg.op == "variance":
                number = (hi - lo) ** 2 / 12  # a uniform variable's variance
            elif agg.op == "std":
                number = (hi - lo) / math.sqrt(12)
            part = agg.alias if agg.op == "sum" else f"{agg.alias}__sum"
            distribution, scale, _half = priced.accuracy[part]
            if agg.op != "sum":
                distribution = composite_mechanism(agg.op, distribution)
        return {
            "value": number,
            "ci95": [number, number],
            "aggregate": agg.op,
            "column": agg.column,
            "mechanism": distribution,
            "noise_scale": scale,
            "placeholder": True,
        }

    return _shaped(query, schema, value)


def warm_up() -> None:
    """Price one tiny plan at start-up.

    The first measurement built in a process pays for loading OpenDP's native
    library (measured: ~2 s); this keeps that off the first researcher's job.
    """
    schema = Schema.from_dict({"columns": {"x": {"type": "int", "bounds": [0, 1]}}})
    query = Query("warm_up", (), (), (Agg("count", None, None, "count"),), "scalar")
    price(query, DatasetHandle("warm_up", schema, Path("/nonexistent")), Decimal(1))
