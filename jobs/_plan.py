"""Query plans: immutable values built by scripts and priced by the host.

A plan is a tree of frozen dataclasses. Scripts build it through the facade in
`jobs._api`; it crosses the process boundary as plain JSON (`to_wire`) and the
trusted host rebuilds it with `from_wire`, which trusts nothing: every node type,
operator, name and literal is checked, and sizes are capped, because the worker
that produced the JSON runs untrusted code.

The shape of a plan follows Polars: ``dataset → filter* → group_by? → agg``.
Only an aggregate plan (`Query`) can be released.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

from ._errors import PlanError

BINARY_OPS = frozenset(
    {"add", "sub", "mul", "truediv", "eq", "ne", "lt", "le", "gt", "ge", "and", "or"}
)
UNARY_OPS = frozenset({"not", "neg", "is_null", "is_not_null"})
AGG_OPS = frozenset({"count", "sum", "mean", "variance", "std", "quantile"})
#: Most candidate values a quantile may choose from.
MAX_CANDIDATES = 10_000
#: Largest candidate magnitude: integers stay exact as floats and inside 64 bits.
_MAX_CANDIDATE = 2**53
MAX_BIN_EDGES = 1_000
Shape = Literal["scalar", "record", "table"]
SHAPES: tuple[Shape, ...] = ("scalar", "record", "table")

MAX_NODES = 2_000
MAX_DEPTH = 64
MAX_NAME = 200
MAX_IN_VALUES = 1_000

Literal_ = int | float | str | bool | None


@dataclass(frozen=True, slots=True)
class Col:
    """A column of the dataset."""

    name: str


@dataclass(frozen=True, slots=True)
class Lit:
    """A constant from the script."""

    value: Literal_


@dataclass(frozen=True, slots=True)
class BinOp:
    """Arithmetic, comparison or boolean combination of two expressions."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class UnaryOp:
    """Negation, boolean not, and null tests."""

    op: str
    arg: Expr


@dataclass(frozen=True, slots=True)
class IsIn:
    """Membership in a constant list."""

    arg: Expr
    values: tuple[Literal_, ...]


@dataclass(frozen=True, slots=True)
class Clip:
    """Values clamped to [lo, hi]."""

    arg: Expr
    lo: float
    hi: float


@dataclass(frozen=True, slots=True)
class FillNull:
    """Nulls replaced by a constant."""

    arg: Expr
    value: Literal_


@dataclass(frozen=True, slots=True)
class Cast:
    """Conversion between numeric types ("int" truncates toward zero)."""

    arg: Expr
    to: str


@dataclass(frozen=True, slots=True)
class When:
    """``when(cond).then(then).otherwise(otherwise)``: a null condition counts as false."""

    cond: Expr
    then: Expr
    otherwise: Expr


Expr = Col | Lit | BinOp | UnaryOp | IsIn | Clip | FillNull | Cast | When
CAST_TYPES = ("int", "float")


@dataclass(frozen=True, slots=True)
class Agg:
    """One aggregate: ``count()``, ``sum(column)``, ``quantile(column, q)``...

    ``bounds`` is the researcher's narrower clamp, if any; otherwise the
    column's public bounds apply. A quantile has its level ``q`` and, if the
    researcher chose them, the ``candidates`` it picks its answer from.
    """

    op: str
    column: str | None
    bounds: tuple[float, float] | None
    alias: str
    q: float | None = None
    candidates: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class Query:
    """A releasable plan: filters, optional public-key grouping, aggregates.

    ``shape`` tells how the release is handed back: one value (``scalar``), a
    mapping alias → value (``record``) or one row per group (``table``).
    """

    dataset: str
    filters: tuple[Expr, ...]
    group_by: tuple[str, ...]
    aggs: tuple[Agg, ...]
    shape: Shape
    #: Public bin edges: the single group_by column is then a numeric column cut
    #: into ``len(bins) + 1`` intervals (a histogram).
    bins: tuple[float, ...] | None = None
    #: Derived columns ``(name, expression)``, computed row by row before filters.
    #: Their names are new, so the order of with_columns and filter is immaterial.
    derived: tuple[tuple[str, Expr], ...] = ()


# --- wire form ------------------------------------------------------------------------


def expr_to_wire(e: Expr) -> dict[str, Any]:
    """JSON form of an expression."""
    if isinstance(e, Col):
        return {"col": e.name}
    if isinstance(e, Lit):
        return {"lit": e.value}
    if isinstance(e, BinOp):
        return {"op": e.op, "args": [expr_to_wire(e.left), expr_to_wire(e.right)]}
    if isinstance(e, UnaryOp):
        return {"op": e.op, "args": [expr_to_wire(e.arg)]}
    if isinstance(e, Clip):
        return {"op": "clip", "args": [expr_to_wire(e.arg)], "lo": e.lo, "hi": e.hi}
    if isinstance(e, FillNull):
        return {"op": "fill_null", "args": [expr_to_wire(e.arg)], "value": e.value}
    if isinstance(e, Cast):
        return {"op": "cast", "args": [expr_to_wire(e.arg)], "to": e.to}
    if isinstance(e, When):
        return {"op": "when", "args": [expr_to_wire(x) for x in (e.cond, e.then, e.otherwise)]}
    return {"op": "is_in", "args": [expr_to_wire(e.arg)], "values": list(e.values)}


def to_wire(q: Query) -> dict[str, Any]:
    """JSON form of a query (what the worker sends to the host)."""
    return {
        "dataset": q.dataset,
        "filters": [expr_to_wire(f) for f in q.filters],
        "group_by": list(q.group_by),
        "aggs": [_agg_to_wire(a) for a in q.aggs],
        "shape": q.shape,
        "bins": None if q.bins is None else list(q.bins),
        "derived": [[name, expr_to_wire(e)] for name, e in q.derived],
    }


def _agg_to_wire(a: Agg) -> dict[str, Any]:
    out: dict[str, Any] = {
        "op": a.op,
        "column": a.column,
        "bounds": None if a.bounds is None else list(a.bounds),
        "alias": a.alias,
    }
    if a.op == "quantile":
        out["q"] = a.q
        out["candidates"] = None if a.candidates is None else list(a.candidates)
    return out


class _Budget:
    def __init__(self) -> None:
        self.nodes = 0

    def tick(self, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise PlanError(f"plan too large (more than {MAX_NODES} expression nodes)")
        if depth > MAX_DEPTH:
            raise PlanError(f"expression nested deeper than {MAX_DEPTH} levels")


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise PlanError(f"{what} must be a non-empty string of at most {MAX_NAME} characters")
    return value


def check_literal(value: Any) -> Literal_:
    """Accept only JSON scalars; floats must be finite."""
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str) and len(value) > 10_000:
            raise PlanError("string literal too long")
        return value
    if isinstance(value, int):
        if abs(value) > 2**63 - 1:
            raise PlanError("integer literal out of the 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PlanError(f"literal must be finite, got {value!r}")
        return value
    raise PlanError(
        f"literals must be numbers, strings, booleans or None, not {type(value).__name__}"
    )


def expr_from_wire(raw: Any, budget: _Budget | None = None, depth: int = 0) -> Expr:
    """Rebuild an expression from untrusted JSON."""
    budget = budget or _Budget()
    budget.tick(depth)
    if not isinstance(raw, dict):
        raise PlanError("malformed expression")
    if set(raw) == {"col"}:
        return Col(_name(raw["col"], "column name"))
    if set(raw) == {"lit"}:
        return Lit(check_literal(raw["lit"]))
    op = raw.get("op")
    args = raw.get("args")
    if not isinstance(op, str) or not isinstance(args, list):
        raise PlanError("malformed expression")
    if op in BINARY_OPS and set(raw) == {"op", "args"} and len(args) == 2:
        return BinOp(
            op,
            expr_from_wire(args[0], budget, depth + 1),
            expr_from_wire(args[1], budget, depth + 1),
        )
    if op == "when" and set(raw) == {"op", "args"} and len(args) == 3:
        cond, then, otherwise = (expr_from_wire(a, budget, depth + 1) for a in args)
        return When(cond, then, otherwise)
    if op in UNARY_OPS and set(raw) == {"op", "args"} and len(args) == 1:
        return UnaryOp(op, expr_from_wire(args[0], budget, depth + 1))
    if op == "is_in" and set(raw) == {"op", "args", "values"} and len(args) == 1:
        values = raw["values"]
        if not isinstance(values, list) or len(values) > MAX_IN_VALUES:
            raise PlanError(f"is_in takes a list of at most {MAX_IN_VALUES} constants")
        return IsIn(
            expr_from_wire(args[0], budget, depth + 1), tuple(check_literal(v) for v in values)
        )
    if len(args) == 1 and op in ("clip", "fill_null", "cast"):
        arg = expr_from_wire(args[0], budget, depth + 1)
        if op == "clip" and set(raw) == {"op", "args", "lo", "hi"}:
            lo, hi = raw["lo"], raw["hi"]
            if not (is_finite_number(lo) and is_finite_number(hi)) or lo > hi:
                raise PlanError("clip(lo, hi) takes two finite numbers with lo <= hi")
            return Clip(arg, lo, hi)
        if op == "fill_null" and set(raw) == {"op", "args", "value"}:
            return FillNull(arg, check_literal(raw["value"]))
        if op == "cast" and set(raw) == {"op", "args", "to"} and raw["to"] in CAST_TYPES:
            return Cast(arg, raw["to"])
    raise PlanError(f"unknown expression operator {op!r}")


def is_finite_number(value: Any) -> bool:
    """A real number (not bool) that a float can hold; ``10**400`` is not.

    >>> is_finite_number(3), is_finite_number(float("nan")), is_finite_number(10**400)
    (True, False, False)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _bounds(raw: Any) -> tuple[float, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 2 or not all(is_finite_number(b) for b in raw):
        raise PlanError("bounds must be two finite numbers (lo, hi)")
    lo, hi = raw
    if lo >= hi:
        raise PlanError(f"bounds must have lo < hi, got ({lo}, {hi})")
    return (lo, hi)


def from_wire(raw: Any) -> Query:
    """Rebuild a query from untrusted JSON; structural checks only (no schema)."""
    required = {"dataset", "filters", "group_by", "aggs", "shape"}
    if not isinstance(raw, dict) or not required <= set(raw) <= required | {"bins", "derived"}:
        raise PlanError("malformed plan")
    budget = _Budget()
    filters_raw, group_raw, aggs_raw = raw["filters"], raw["group_by"], raw["aggs"]
    if not isinstance(filters_raw, list) or len(filters_raw) > 100:
        raise PlanError("malformed plan: filters")
    if not isinstance(group_raw, list) or len(group_raw) > 8:
        raise PlanError("group_by takes at most 8 columns")
    if not isinstance(aggs_raw, list) or not aggs_raw or len(aggs_raw) > 100:
        raise PlanError("a release needs between 1 and 100 aggregates")
    if not isinstance(raw["shape"], str) or raw["shape"] not in SHAPES:
        raise PlanError("malformed plan: shape")
    aggs: list[Agg] = []
    for a in aggs_raw:
        keys = {"op", "column", "bounds", "alias"}
        if not isinstance(a, dict) or not keys <= set(a):
            raise PlanError("malformed aggregate")
        if not isinstance(a["op"], str) or a["op"] not in AGG_OPS:
            raise PlanError(f"unknown aggregate {a['op']!r}")
        if set(a) != (keys | {"q", "candidates"} if a["op"] == "quantile" else keys):
            raise PlanError("malformed aggregate")
        column = None if a["column"] is None else _name(a["column"], "aggregate column")
        alias = _name(a["alias"], "alias")
        if not alias.isidentifier():
            raise PlanError(f"aggregate name {alias!r} must be a valid identifier")
        bounds = _bounds(a["bounds"])
        if a["op"] == "quantile":
            level, candidates = quantile_args(a["q"], a["candidates"])
            aggs.append(Agg("quantile", column, bounds, alias, level, candidates))
        else:
            aggs.append(Agg(a["op"], column, bounds, alias))
    group_by = tuple(_name(g, "group_by column") for g in group_raw)
    q = Query(
        dataset=_name(raw["dataset"], "dataset name"),
        filters=tuple(expr_from_wire(f, budget) for f in filters_raw),
        group_by=group_by,
        aggs=tuple(aggs),
        shape=raw["shape"],
        bins=_bin_edges(raw.get("bins")),
        derived=_derived(raw.get("derived", []), budget),
    )
    check_structure(q)
    return q


def quantile_args(q: Any, candidates: Any) -> tuple[float, tuple[float, ...] | None]:
    """Check a quantile's level and optional candidates (no schema needed)."""
    if not is_finite_number(q) or not 0 <= q <= 1:
        raise PlanError(f"quantile level q must be a number between 0 and 1, got {q!r}")
    if candidates is None:
        return float(q), None
    if (
        not isinstance(candidates, (list, tuple))
        or not 1 <= len(candidates) <= MAX_CANDIDATES
        or not all(is_finite_number(c) for c in candidates)
    ):
        raise PlanError(
            f"candidates must be a list of 1 to {MAX_CANDIDATES} finite numbers (the values "
            "the quantile may take)"
        )
    # Compared as the floats OpenDP will see too: 2**53 and 2**53 + 1 are one value.
    if any(a >= b or float(a) >= float(b) for a, b in itertools.pairwise(candidates)):
        raise PlanError("quantile candidates must be strictly increasing (as floats)")
    if any(abs(c) > _MAX_CANDIDATE for c in candidates):
        raise PlanError(f"quantile candidates must lie within ±{_MAX_CANDIDATE:.0e}")
    return float(q), tuple(candidates)


def _derived(raw: Any, budget: _Budget) -> tuple[tuple[str, Expr], ...]:
    if not isinstance(raw, list) or len(raw) > 100:
        raise PlanError("malformed plan: derived columns")
    out = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 2:
            raise PlanError("malformed plan: derived column")
        out.append((_name(item[0], "derived column name"), expr_from_wire(item[1], budget)))
    return tuple(out)


def _bin_edges(raw: Any) -> tuple[float, ...] | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, (list, tuple))
        or not 1 <= len(raw) <= MAX_BIN_EDGES
        or not all(is_finite_number(b) for b in raw)
    ):
        raise PlanError(f"bins must be 1 to {MAX_BIN_EDGES} finite numbers (the bin edges)")
    # Compared as the floats Polars will cut with: 2**53 and 2**53 + 1 are one edge.
    edges = tuple(float(b) for b in raw)
    if any(a >= b for a, b in itertools.pairwise(edges)):
        raise PlanError("bin edges must be strictly increasing")
    return edges


def check_structure(q: Query) -> None:
    """Checks that need no schema: aliases, shapes, aggregate arguments."""
    aliases = [a.alias for a in q.aggs]
    dup = sorted({x for x in aliases if aliases.count(x) > 1})
    if dup:
        raise PlanError(f"duplicate aggregate name(s) {', '.join(dup)}; use .alias(...)")
    clash = sorted(set(aliases) & set(q.group_by))
    if clash:
        raise PlanError(f"aggregate name(s) {', '.join(clash)} clash with group_by columns")
    if len(set(q.group_by)) != len(q.group_by):
        raise PlanError("group_by lists a column twice")
    if q.shape == "scalar" and (len(q.aggs) != 1 or q.group_by):
        raise PlanError("malformed plan: scalar shape")
    if (q.shape == "table") != bool(q.group_by):
        raise PlanError("malformed plan: table shape")
    if q.bins is not None:
        _bin_edges(q.bins)
        if len(q.group_by) != 1:
            raise PlanError("a histogram bins exactly one column")
    for a in q.aggs:
        if a.op == "count" and (a.column is not None or a.bounds is not None):
            raise PlanError("count() takes no column or bounds")
        if a.op != "count" and a.column is None:
            raise PlanError(f"{a.op}() needs a column name")
        if a.op == "quantile":
            quantile_args(a.q, a.candidates)
        elif a.q is not None or a.candidates is not None:
            raise PlanError(f"{a.op}() takes no quantile level or candidates")
