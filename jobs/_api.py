"""The job API: the only names a researcher's script sees.

Everything here is a facade over immutable plan values (`jobs._plan`). The
objects hold no data and no handle to anything that does: a `Frame` is a
description of rows, never rows. Attributes whose names start with ``_`` are
unreachable from RestrictedPython code, which is where the facade keeps its plan
node. `release` is the one door to the trusted host.

Example::

    stays = dataset("tourism_stays")
    adults = stays.filter(col("age") >= 18)
    result["by_region"] = release(adults.group_by("region").agg(count(), mean("nights")),
                                  epsilon=0.5)
    result["spend"] = release(stays.sum("spend"), epsilon=0.2)

`sum` is both the aggregate (``sum("spend")``) and, given numbers, the builtin
(``sum([a.value, b.value])``), so scripts can still add up released values.
"""

from __future__ import annotations

import builtins
import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

from ._errors import PlanError, ResultRejected
from ._plan import (
    CAST_TYPES,
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
    Shape,
    UnaryOp,
    When,
    check_literal,
    check_structure,
    is_finite_number,
    quantile_args,
)

ReleaseFn = Callable[[Query, Any, Any, Any], Any]


class _Frozen:
    """Facades are values: no attribute can be set once built."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


def _init(obj: object, **fields: Any) -> None:
    for k, v in fields.items():
        object.__setattr__(obj, k, v)


def _as_expr(value: Any) -> Expr:
    if isinstance(value, ColumnExpr):
        node: Expr = value._node
        return node
    if isinstance(value, WhenThen):
        raise PlanError("when(...).then(...) is complete only with .otherwise(...)")
    if isinstance(value, Released):
        return Lit(value.value)
    try:
        return Lit(check_literal(value))
    except PlanError:
        raise TypeError(
            f"cannot use a {type(value).__name__} in an expression; use col(...) or a constant"
        ) from None


class ColumnExpr(_Frozen):
    """An expression over columns: ``col("age") >= 18``, ``(col("a") + 1) * 2``.

    Combine conditions with ``&``, ``|`` and ``~`` (Python's ``and``/``or``/``not``
    cannot be overloaded).
    """

    __slots__ = ("_node",)
    _node: Expr

    def __init__(self, node: Expr) -> None:
        _init(self, _node=node)

    def _bin(self, op: str, other: Any, reflected: bool = False) -> ColumnExpr:
        left, right = self._node, _as_expr(other)
        return ColumnExpr(BinOp(op, right, left) if reflected else BinOp(op, left, right))

    def __add__(self, o: Any) -> ColumnExpr:
        return self._bin("add", o)

    def __radd__(self, o: Any) -> ColumnExpr:
        return self._bin("add", o, True)

    def __sub__(self, o: Any) -> ColumnExpr:
        return self._bin("sub", o)

    def __rsub__(self, o: Any) -> ColumnExpr:
        return self._bin("sub", o, True)

    def __mul__(self, o: Any) -> ColumnExpr:
        return self._bin("mul", o)

    def __rmul__(self, o: Any) -> ColumnExpr:
        return self._bin("mul", o, True)

    def __truediv__(self, o: Any) -> ColumnExpr:
        return self._bin("truediv", o)

    def __rtruediv__(self, o: Any) -> ColumnExpr:
        return self._bin("truediv", o, True)

    def __eq__(self, o: Any) -> ColumnExpr:  # type: ignore[override]
        return self._bin("eq", o)

    def __ne__(self, o: Any) -> ColumnExpr:  # type: ignore[override]
        return self._bin("ne", o)

    def __lt__(self, o: Any) -> ColumnExpr:
        return self._bin("lt", o)

    def __le__(self, o: Any) -> ColumnExpr:
        return self._bin("le", o)

    def __gt__(self, o: Any) -> ColumnExpr:
        return self._bin("gt", o)

    def __ge__(self, o: Any) -> ColumnExpr:
        return self._bin("ge", o)

    def __and__(self, o: Any) -> ColumnExpr:
        return self._bin("and", o)

    def __rand__(self, o: Any) -> ColumnExpr:
        return self._bin("and", o, True)

    def __or__(self, o: Any) -> ColumnExpr:
        return self._bin("or", o)

    def __ror__(self, o: Any) -> ColumnExpr:
        return self._bin("or", o, True)

    def __invert__(self) -> ColumnExpr:
        return ColumnExpr(UnaryOp("not", self._node))

    def __neg__(self) -> ColumnExpr:
        return ColumnExpr(UnaryOp("neg", self._node))

    def __bool__(self) -> bool:
        raise TypeError(
            "a column expression has no truth value; combine conditions with & | ~ "
            "(not and/or/not) and pass them to .filter(...)"
        )

    __hash__ = None  # type: ignore[assignment]

    def is_null(self) -> ColumnExpr:
        """True where the value is missing."""
        return ColumnExpr(UnaryOp("is_null", self._node))

    def is_not_null(self) -> ColumnExpr:
        """True where the value is present."""
        return ColumnExpr(UnaryOp("is_not_null", self._node))

    def clip(self, lo: Any, hi: Any) -> ColumnExpr:
        """Values clamped to [lo, hi]; the result's bounds are [lo, hi]."""
        if not (is_finite_number(lo) and is_finite_number(hi)) or lo > hi:
            raise PlanError("clip(lo, hi) takes two finite numbers with lo <= hi")
        return ColumnExpr(Clip(self._node, lo, hi))

    def fill_null(self, value: Any) -> ColumnExpr:
        """Nulls replaced by ``value`` (a constant)."""
        return ColumnExpr(FillNull(self._node, check_literal(value)))

    def cast(self, to: str) -> ColumnExpr:
        """``"int"`` (truncating toward zero) or ``"float"``."""
        if to not in CAST_TYPES:
            raise PlanError(f"cast(...) takes one of {', '.join(CAST_TYPES)}, got {to!r}")
        return ColumnExpr(Cast(self._node, to))

    def is_in(self, values: Iterable[Any]) -> ColumnExpr:
        """True where the value is one of ``values`` (constants)."""
        if isinstance(values, str):
            raise TypeError("is_in takes a list of values, not a string")
        return ColumnExpr(IsIn(self._node, tuple(check_literal(v) for v in values)))

    def __repr__(self) -> str:
        return f"<expression {_describe(self._node)}>"


def _describe(e: Expr) -> str:
    if isinstance(e, Col):
        return f"col({e.name!r})"
    if isinstance(e, Lit):
        return repr(e.value)
    if isinstance(e, UnaryOp):
        return f"{e.op}({_describe(e.arg)})"
    if isinstance(e, IsIn):
        return f"{_describe(e.arg)}.is_in({list(e.values)!r})"
    if isinstance(e, Clip):
        return f"{_describe(e.arg)}.clip({e.lo!r}, {e.hi!r})"
    if isinstance(e, FillNull):
        return f"{_describe(e.arg)}.fill_null({e.value!r})"
    if isinstance(e, Cast):
        return f"{_describe(e.arg)}.cast({e.to!r})"
    if isinstance(e, When):
        parts = [_describe(x) for x in (e.cond, e.then, e.otherwise)]
        return "when({}).then({}).otherwise({})".format(*parts)
    return f"({_describe(e.left)} {e.op} {_describe(e.right)})"


def _columns_of(e: Expr) -> list[str]:
    """Names of the columns an expression reads."""
    if isinstance(e, Col):
        return [e.name]
    if isinstance(e, Lit):
        return []
    if isinstance(e, BinOp):
        return _columns_of(e.left) + _columns_of(e.right)
    if isinstance(e, When):
        return _columns_of(e.cond) + _columns_of(e.then) + _columns_of(e.otherwise)
    return _columns_of(e.arg)


def _condition(cond: Any) -> Expr:
    if not isinstance(cond, ColumnExpr):
        raise PlanError("when(...) takes a condition such as col('age') >= 65")
    node: Expr = cond._node
    return node


class WhenThen(_Frozen):
    """``when(cond)`` waiting for ``.then(value)``; not an expression yet."""

    __slots__ = ("_branches",)
    _branches: tuple[tuple[Expr, Expr | None], ...]

    def __init__(self, branches: tuple[tuple[Expr, Expr | None], ...]) -> None:
        _init(self, _branches=branches)

    def then(self, value: Any) -> WhenThen:
        """The value where the condition holds (a column expression or a constant)."""
        *done, (cond, pending) = self._branches
        if pending is not None:
            raise PlanError("then(...) follows when(...); chain .when(...) for another case")
        return WhenThen((*done, (cond, _as_expr(value))))

    def when(self, condition: Any) -> WhenThen:
        """Another case, tried when the earlier ones do not hold."""
        if self._branches[-1][1] is None:
            raise PlanError("when(...) needs .then(...) before the next .when(...)")
        return WhenThen((*self._branches, (_condition(condition), None)))

    def otherwise(self, value: Any) -> ColumnExpr:
        """The value where no condition holds; this completes the expression."""
        if self._branches[-1][1] is None:
            raise PlanError("when(...) needs .then(...) before .otherwise(...)")
        node = _as_expr(value)
        for cond, then in reversed(self._branches):
            assert then is not None
            node = When(cond, then, node)
        return ColumnExpr(node)

    def __repr__(self) -> str:
        return "<when(...): complete it with .then(...) and .otherwise(...)>"


def when(condition: Any) -> WhenThen:
    """``when(cond).then(a).otherwise(b)``: ``a`` where ``cond`` holds, else ``b``.

    Chain cases with ``.when(...).then(...)``; ``.otherwise(...)`` is required
    (there is no implicit null). A null condition counts as false, as in Polars.
    """
    return WhenThen(((_condition(condition), None),))


class Aggregate(_Frozen):
    """An aggregate to put in ``.agg(...)``: ``count()``, ``sum("x")``, ``mean("x")``."""

    __slots__ = ("_agg",)
    _agg: Agg

    def __init__(self, agg: Agg) -> None:
        _init(self, _agg=agg)

    def alias(self, name: str) -> Aggregate:
        """The same aggregate under another name in the released output."""
        if not isinstance(name, str) or not name.isidentifier():
            raise PlanError(f"alias must be a valid identifier, got {name!r}")
        return Aggregate(dataclasses.replace(self._agg, alias=name))

    def __repr__(self) -> str:
        a = self._agg
        return f"<aggregate {a.alias} = {a.op}({a.column or ''})>"


def _column_name(column: Any, op: str) -> str:
    if isinstance(column, str):
        return column
    if isinstance(column, ColumnExpr) and isinstance(column._node, Col):
        return column._node.name
    raise PlanError(f"{op}(...) takes a column name, e.g. {op}('nights')")


def _bounds_arg(bounds: Any, op: str) -> tuple[float, float] | None:
    if bounds is None:
        return None
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise PlanError(f"{op}(..., bounds=(lo, hi)) takes two numbers") from None
    for b in (lo, hi):
        if not is_finite_number(b):
            raise PlanError(f"{op}(..., bounds=(lo, hi)) takes two finite numbers")
    if lo >= hi:
        raise PlanError(f"{op}(..., bounds=(lo, hi)) needs lo < hi, got ({lo}, {hi})")
    return (lo, hi)


def count() -> Aggregate:
    """Number of rows (noisy)."""
    return Aggregate(Agg("count", None, None, "count"))


def agg_sum(column: Any, bounds: Any = None) -> Aggregate:
    """Sum of a numeric column, each value clamped to the column's public bounds.

    ``bounds=(lo, hi)`` narrows the clamp (less noise, more clamping bias).
    """
    name = _column_name(column, "sum")
    return Aggregate(Agg("sum", name, _bounds_arg(bounds, "sum"), f"sum_{name}"))


def mean(column: Any, bounds: Any = None) -> Aggregate:
    """Mean of a numeric column: a noisy sum over a noisy count, in one release."""
    name = _column_name(column, "mean")
    return Aggregate(Agg("mean", name, _bounds_arg(bounds, "mean"), f"mean_{name}"))


def variance(column: Any, bounds: Any = None) -> Aggregate:
    """Sample variance of a numeric column, from a noisy count, sum and sum of squares."""
    name = _column_name(column, "variance")
    return Aggregate(Agg("variance", name, _bounds_arg(bounds, "variance"), f"variance_{name}"))


def std(column: Any, bounds: Any = None) -> Aggregate:
    """Sample standard deviation: the square root of `variance`, same cost."""
    name = _column_name(column, "std")
    return Aggregate(Agg("std", name, _bounds_arg(bounds, "std"), f"std_{name}"))


def _level_name(q: float) -> str:
    """``0.25`` → ``q25``, ``0.999`` → ``q99_9``: a percentile that is an identifier."""
    pct = f"{q * 100:.10f}".rstrip("0").rstrip(".")
    return "q" + pct.replace(".", "_")


def _one_quantile(name: str, q: Any, bounds: Any, candidates: Any) -> Aggregate:
    if isinstance(candidates, (str, bytes)) or (
        candidates is not None and not hasattr(candidates, "__iter__")
    ):
        raise PlanError("quantile(..., candidates=[...]) takes a list of numbers")
    level, cands = quantile_args(q, None if candidates is None else list(candidates))
    alias = f"median_{name}" if level == 0.5 else f"{_level_name(level)}_{name}"
    return Aggregate(Agg("quantile", name, _bounds_arg(bounds, "quantile"), alias, level, cands))


def quantile(column: Any, q: Any, bounds: Any = None, candidates: Any = None) -> Any:
    """The ``q``-quantile of a numeric column, chosen among public candidate values.

    ``q`` may be a list of levels: several quantiles, each its own aggregate
    (``agg(...)`` accepts the list as is). The candidates default to every
    integer within the bounds of a narrow int column, else 1,001 evenly spaced
    values across the bounds; pass ``candidates=[...]`` to choose them.
    """
    name = _column_name(column, "quantile")
    if isinstance(q, (list, tuple)):
        if not q:
            raise PlanError("quantile(column, [q1, q2, ...]) needs at least one level")
        return [_one_quantile(name, level, bounds, candidates) for level in q]
    return _one_quantile(name, q, bounds, candidates)


def median(column: Any, bounds: Any = None, candidates: Any = None) -> Aggregate:
    """The median: ``quantile(column, 0.5)``."""
    result: Aggregate = quantile(column, 0.5, bounds, candidates)
    return result


def sum_(*args: Any, **kwargs: Any) -> Any:
    """``sum("col")`` is the aggregate; ``sum(numbers)`` is Python's sum."""
    if args and isinstance(args[0], (str, ColumnExpr)):
        return agg_sum(*args, **kwargs)
    if not args:
        raise TypeError("sum() takes a column name (the aggregate) or a list of numbers")
    return builtins.sum(
        (x.value if isinstance(x, Released) else x for x in args[0]), *args[1:], **kwargs
    )


class _Releasable(_Frozen):
    """Frames and grouped frames share the single-aggregate shorthands."""

    __slots__ = ()

    def _query(self, aggs: tuple[Aggregate, ...], scalar: bool) -> ReleasablePlan:
        raise NotImplementedError

    def agg(self, *aggs: Aggregate | list[Aggregate]) -> ReleasablePlan:
        """Several aggregates in one release, for one composed cost.

        A list (such as ``quantile("x", [0.25, 0.75])`` returns) counts as its items.
        """
        if not aggs:
            raise PlanError("agg(...) needs at least one aggregate, e.g. agg(count())")
        flat: list[Any] = []
        for a in aggs:
            flat.extend(a if isinstance(a, (list, tuple)) else [a])
        for a in flat:
            if not isinstance(a, Aggregate):
                raise PlanError(
                    f"agg(...) takes aggregates such as count(), sum('x'), mean('x'); got {a!r}"
                )
        return self._query(tuple(flat), scalar=False)

    def count(self) -> ReleasablePlan:
        """Shorthand for ``.agg(count())``."""
        return self._query((count(),), scalar=True)

    def sum(self, column: Any, bounds: Any = None) -> ReleasablePlan:
        """Shorthand for ``.agg(sum(column))``."""
        return self._query((agg_sum(column, bounds),), scalar=True)

    def mean(self, column: Any, bounds: Any = None) -> ReleasablePlan:
        """Shorthand for ``.agg(mean(column))``."""
        return self._query((mean(column, bounds),), scalar=True)

    def variance(self, column: Any, bounds: Any = None) -> ReleasablePlan:
        """Shorthand for ``.agg(variance(column))``."""
        return self._query((variance(column, bounds),), scalar=True)

    def std(self, column: Any, bounds: Any = None) -> ReleasablePlan:
        """Shorthand for ``.agg(std(column))``."""
        return self._query((std(column, bounds),), scalar=True)

    def quantile(
        self, column: Any, q: Any, bounds: Any = None, candidates: Any = None
    ) -> ReleasablePlan:
        """Shorthand for ``.agg(quantile(column, q))``; a list of levels gives a record."""
        made = quantile(column, q, bounds, candidates)
        if isinstance(made, list):
            return self._query(tuple(made), scalar=False)
        return self._query((made,), scalar=True)

    def median(self, column: Any, bounds: Any = None, candidates: Any = None) -> ReleasablePlan:
        """Shorthand for ``.agg(median(column))``."""
        return self._query((median(column, bounds, candidates),), scalar=True)


class Frame(_Releasable):
    """The rows of a dataset, possibly filtered. Holds no data, only the description."""

    __slots__ = ("_dataset", "_derived", "_filters", "_selected")
    _dataset: str
    _filters: tuple[Expr, ...]
    _derived: tuple[tuple[str, Expr], ...]
    #: The columns later steps may use, after select(...); None: all of them.
    _selected: tuple[str, ...] | None

    def __init__(
        self,
        dataset: str,
        filters: tuple[Expr, ...] = (),
        derived: tuple[tuple[str, Expr], ...] = (),
        selected: tuple[str, ...] | None = None,
    ) -> None:
        _init(self, _dataset=dataset, _filters=filters, _derived=derived, _selected=selected)

    def _visible(self, names: Iterable[str], where: str) -> None:
        if self._selected is None:
            return
        for name in names:
            if name not in self._selected:
                raise PlanError(
                    f"{where}: column {name!r} was dropped by select(...); "
                    f"the selected columns are {', '.join(self._selected)}"
                )

    def filter(self, condition: ColumnExpr) -> Frame:
        """Keep rows where ``condition`` holds, e.g. ``col("age") >= 18``."""
        if not isinstance(condition, ColumnExpr):
            raise PlanError("filter(...) takes a condition such as col('age') >= 18")
        self._visible(_columns_of(condition._node), "filter")
        return Frame(
            self._dataset, (*self._filters, condition._node), self._derived, self._selected
        )

    def _added(self, columns: dict[str, Any], where: str) -> list[tuple[str, Expr]]:
        added = []
        for name, value in columns.items():
            node = value._node if isinstance(value, ColumnExpr) else _as_expr(value)
            self._visible(_columns_of(node), where)
            added.append((name, node))
        return added

    def with_columns(self, **columns: Any) -> Frame:
        """Add derived columns, row by row: ``with_columns(total=col("a") + col("b"))``.

        Names must be new. Bounds follow by interval arithmetic from the public
        bounds (``clip`` sets them); a column whose bounds cannot be derived (a
        division by a range containing 0) needs ``bounds=`` when aggregated.
        """
        if not columns:
            raise PlanError("with_columns(name=expression, ...) needs at least one column")
        added = self._added(columns, "with_columns")
        selected = None if self._selected is None else (*self._selected, *columns)
        return Frame(self._dataset, self._filters, (*self._derived, *added), selected)

    def select(self, *names: Any, **columns: Any) -> Frame:
        """Keep only some columns (and define new ones) for the steps that follow.

        ``select("age", "nights", per_night=col("spend_eur") / col("nights"))``.
        Later filters, groupings and aggregates may use only these; the cost and
        the released values do not change (only aggregates are ever released).
        """
        if not names and not columns:
            raise PlanError("select(...) needs at least one column")
        kept = tuple(_column_name(c, "select") for c in names)
        self._visible(kept, "select")
        added = self._added(columns, "select")
        selected = tuple(dict.fromkeys((*kept, *columns)))
        return Frame(self._dataset, self._filters, (*self._derived, *added), selected)

    def group_by(self, *columns: Any) -> GroupedFrame:
        """Group on columns with public keys, or on a string column by thresholding.

        Public keys: category and bool columns, narrow int columns, and derived
        booleans or narrow ints. A string column's keys are released only where
        their noisy count passes a threshold (the release then costs delta).
        """
        if not columns:
            raise PlanError("group_by(...) needs at least one column")
        names = tuple(_column_name(c, "group_by") for c in columns)
        self._visible(names, "group_by")
        return GroupedFrame(self, names)

    def histogram(self, column: Any, bins: Any = None) -> ReleasablePlan:
        """Noisy counts per bin of a column: one release, one row per bin.

        ``bins`` are public edges for an int or float column; omit them for a
        category or bool column to count per declared value. With edges
        ``[e0, ..., ek]`` the bins are ``< e0``, ``[e0, e1)``, ..., ``>= ek``:
        every row falls in exactly one bin.
        """
        name = _column_name(column, "histogram")
        self._visible([name], "histogram")
        edges: tuple[float, ...] | None = None
        if bins is not None:
            if isinstance(bins, (str, bytes)) or not hasattr(bins, "__iter__"):
                raise PlanError("histogram(column, bins=[...]) takes a list of bin edges")
            edges = tuple(bins)
            for e in edges:
                if not is_finite_number(e):
                    raise PlanError("bin edges must be finite numbers")
        return ReleasablePlan(
            Query(
                self._dataset,
                self._filters,
                (name,),
                (count()._agg,),
                "table",
                bins=edges,
                derived=self._derived,
            )
        )

    def _query(self, aggs: tuple[Aggregate, ...], scalar: bool) -> ReleasablePlan:
        self._visible((a._agg.column for a in aggs if a._agg.column), "agg")
        shape: Shape = "scalar" if scalar else "record"
        return ReleasablePlan(
            Query(
                self._dataset,
                self._filters,
                (),
                tuple(a._agg for a in aggs),
                shape,
                derived=self._derived,
            )
        )

    def __repr__(self) -> str:
        where = " where " + " & ".join(_describe(f) for f in self._filters) if self._filters else ""
        return f"<rows of {self._dataset!r}{where}>"


class GroupedFrame(_Releasable):
    """A frame grouped on public keys; ``.agg(...)`` releases one row per key."""

    __slots__ = ("_by", "_frame")
    _by: tuple[str, ...]
    _frame: Frame

    def __init__(self, frame: Frame, by: tuple[str, ...]) -> None:
        _init(self, _frame=frame, _by=by)

    def _query(self, aggs: tuple[Aggregate, ...], scalar: bool) -> ReleasablePlan:
        f = self._frame
        f._visible((a._agg.column for a in aggs if a._agg.column), "agg")
        return ReleasablePlan(
            Query(
                f._dataset,
                f._filters,
                self._by,
                tuple(a._agg for a in aggs),
                "table",
                derived=f._derived,
            )
        )

    def __repr__(self) -> str:
        return f"<{self._frame!r} grouped by {', '.join(self._by)}>"


class ReleasablePlan(_Frozen):
    """An aggregate plan: pass it to ``release(plan, epsilon=...)``."""

    __slots__ = ("_q",)
    _q: Query

    def __init__(self, query: Query) -> None:
        check_structure(query)
        _init(self, _q=query)

    def __repr__(self) -> str:
        q = self._q
        aggs = ", ".join(f"{a.alias}={a.op}({a.column or ''})" for a in q.aggs)
        by = f" by {', '.join(q.group_by)}" if q.group_by else ""
        return f"<plan {aggs}{by} on {q.dataset!r}>"


class Released(_Frozen):
    """A differentially private value and its accuracy.

    Behaves like a number in arithmetic (``a + b``, ``float(a)``); the result of
    arithmetic is a plain number (post-processing). ``ci95`` is a 95% interval
    for the true value; a quantile has none (its distance from the true quantile
    in the column's units depends on the data) and carries ``rank_error``
    instead: with 95% probability, it misplaces at most that many more rows
    than the best of its candidates does (see docs/job-api.md).
    """

    __slots__ = (
        "aggregate",
        "ci95",
        "column",
        "mechanism",
        "noise_scale",
        "q",
        "rank_error",
        "suppressed",
        "value",
    )
    value: Any
    ci95: tuple[Any, ...] | None
    aggregate: str | None
    column: str | None
    mechanism: str | None
    noise_scale: float | None
    q: float | None
    rank_error: float | None
    #: The provider's minimum count, when this cell was suppressed for being below it.
    suppressed: int | None

    def __init__(self, raw: dict[str, Any]) -> None:
        ci = raw.get("ci95")
        _init(
            self,
            value=raw["value"],
            ci95=None if ci is None else tuple(ci),
            aggregate=raw.get("aggregate"),
            column=raw.get("column"),
            mechanism=raw.get("mechanism"),
            noise_scale=raw.get("noise_scale"),
            q=raw.get("q"),
            rank_error=raw.get("rank_error"),
            suppressed=raw.get("suppressed"),
        )

    def _json(self) -> dict[str, Any]:
        out = {
            "value": self.value,
            "ci95": None if self.ci95 is None else list(self.ci95),
            "aggregate": self.aggregate,
            "column": self.column,
            "mechanism": self.mechanism,
            "noise_scale": self.noise_scale,
        }
        if self.aggregate == "quantile":
            out["q"] = self.q
            out["rank_error"] = self.rank_error
        if self.suppressed is not None:
            out["suppressed"] = self.suppressed
        return out

    def __float__(self) -> float:
        return float(self.value)

    def __int__(self) -> int:
        return int(self.value)

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(self.value, ndigits)

    def __add__(self, o: Any) -> Any:
        return self.value + _num(o)

    __radd__ = __add__

    def __sub__(self, o: Any) -> Any:
        return self.value - _num(o)

    def __rsub__(self, o: Any) -> Any:
        return _num(o) - self.value

    def __mul__(self, o: Any) -> Any:
        return self.value * _num(o)

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> Any:
        return self.value / _num(o)

    def __rtruediv__(self, o: Any) -> Any:
        return _num(o) / self.value

    def __lt__(self, o: Any) -> bool:
        return bool(self.value < _num(o))

    def __le__(self, o: Any) -> bool:
        return bool(self.value <= _num(o))

    def __gt__(self, o: Any) -> bool:
        return bool(self.value > _num(o))

    def __ge__(self, o: Any) -> bool:
        return bool(self.value >= _num(o))

    def __neg__(self) -> Any:
        return -self.value

    def __abs__(self) -> Any:
        return abs(self.value)

    def __pow__(self, o: Any) -> Any:
        return self.value ** _num(o)

    def __rpow__(self, o: Any) -> Any:
        return _num(o) ** self.value

    def __eq__(self, o: object) -> bool:
        return bool(self.value == _num(o))

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        if self.value is None:
            return "suppressed (its count is below the provider's minimum)"
        if self.ci95 is None:
            rows = self.rank_error
            return f"{self.value!r} (95%: rank ±{rows:.4g} rows)"
        lo, hi = self.ci95
        return f"{self.value!r} (95% CI {lo!r} .. {hi!r})"


def _num(o: Any) -> Any:
    return o.value if isinstance(o, Released) else o


def wrap_release(raw: Any, shape: Shape) -> Any:
    """Turn the host's JSON release, of the plan's shape, into facades."""
    if shape == "table":
        return [
            {k: Released(v) if isinstance(v, dict) else v for k, v in row.items()} for row in raw
        ]
    if shape == "scalar":
        return Released(raw)
    return {k: Released(v) for k, v in raw.items()}


def make_namespace(release_fn: ReleaseFn, default_dataset: str) -> dict[str, Any]:
    """The script's globals (besides builtins): the job API and the ``result`` dict."""

    def dataset(name: str | None = None) -> Frame:
        """The rows of a dataset you are granted (default: the job's dataset)."""
        if name is None:
            name = default_dataset
        if not isinstance(name, str) or not name:
            raise PlanError("dataset(name) takes the dataset's name")
        return Frame(name)

    def col(name: str) -> ColumnExpr:
        """A column, for filter conditions: ``col("age") >= 18``."""
        if not isinstance(name, str) or not name:
            raise PlanError("col(name) takes a column name")
        return ColumnExpr(Col(name))

    def release(
        plan: ReleasablePlan, epsilon: Any = None, delta: Any = None, rho: Any = None
    ) -> Any:
        """Spend ``epsilon`` (or ``rho``) of your budget for a DP answer to ``plan``.

        Datasets account privacy in their own measure: ``epsilon`` on pure-DP
        datasets, ``rho`` on zero-concentrated-DP ones (``enclave dataset
        describe`` says which). ``delta`` is spent only by plans that group on
        columns without public keys (their keys are released by thresholding).

        The cost is charged before the data is touched; a refused release (budget,
        grant, invalid plan) ends the job.
        """
        if not isinstance(plan, ReleasablePlan):
            raise PlanError(
                f"release(...) takes an aggregate plan such as dataset().count() or "
                f".agg(count(), mean('x')); got {plan!r}"
            )
        if epsilon is None and rho is None:
            raise PlanError("release(plan, epsilon=...) needs an epsilon (or rho=...)")
        if epsilon is not None and rho is not None:
            raise PlanError("release(...) takes epsilon or rho, not both")
        for name, amount in (("epsilon", epsilon), ("delta", delta), ("rho", rho)):
            if amount is not None and (
                isinstance(amount, bool) or not isinstance(amount, (int, float, str))
            ):
                raise PlanError(f"{name} must be a number, got {type(amount).__name__}")
        return wrap_release(release_fn(plan._q, epsilon, delta, rho), plan._q.shape)

    return {
        "dataset": dataset,
        "col": col,
        "count": count,
        "sum": sum_,
        "mean": mean,
        "variance": variance,
        "std": std,
        "quantile": quantile,
        "median": median,
        "when": when,
        "release": release,
        "result": {},
    }


# --- the result ---------------------------------------------------------------------

MAX_RESULT_DEPTH = 32


def result_to_json(value: Any, path: str = "result", depth: int = 0) -> Any:
    """Turn the script's ``result`` into plain JSON.

    Only released values, containers and constants pass: anything else (a plan,
    a function) is refused with the path where it was found.

    Raises:
        ResultRejected: naming the offending path.
    """
    if depth > MAX_RESULT_DEPTH:
        raise ResultRejected(f"{path}: nested deeper than {MAX_RESULT_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ResultRejected(f"{path}: {value!r} is not representable in JSON")
        return value
    if isinstance(value, Released):
        return value._json()
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise ResultRejected(f"{path}: keys must be strings, got {type(k).__name__}")
            out[str(k)] = result_to_json(v, f"{path}[{k!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [result_to_json(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, (Frame, GroupedFrame, ReleasablePlan, ColumnExpr, Aggregate)):
        raise ResultRejected(
            f"{path} is a plan ({value!r}), not a released value: plans never leave the "
            "enclave; put release(plan, epsilon=...) in the result instead"
        )
    raise ResultRejected(
        f"{path}: a {type(value).__name__} cannot be returned; results hold released values, "
        "numbers, strings, booleans, None, lists and dicts"
    )
