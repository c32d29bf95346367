"""The job API facade (`jobs._api`) and the plan wire form (`jobs._plan`), in process.

No worker is started here: these are the values a script builds and the checks the
trusted host applies to the JSON a (possibly hostile) worker sends back.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from jobs import PlanError, ResultRejected
from jobs._api import (
    Aggregate,
    Frame,
    GroupedFrame,
    ReleasablePlan,
    Released,
    make_namespace,
    result_to_json,
    wrap_release,
)
from jobs._plan import (
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_NODES,
    Agg,
    BinOp,
    Col,
    IsIn,
    Lit,
    Query,
    UnaryOp,
    from_wire,
    to_wire,
)

SCALAR = {"value": 42, "ci95": [40, 44], "aggregate": "count", "mechanism": "laplace"}


def fake_release(query: Query) -> Any:
    """What the host hands back for each shape (see `wrap_release`)."""
    if query.shape == "scalar":
        return dict(SCALAR)
    if query.shape == "record":
        return {a.alias: dict(SCALAR) for a in query.aggs}
    return [
        {**{g: f"{g}-{i}" for g in query.group_by}, **{a.alias: dict(SCALAR) for a in query.aggs}}
        for i in range(2)
    ]


class Host:
    def __init__(self) -> None:
        self.calls: list[tuple[Query, Any]] = []

    def __call__(self, query: Query, epsilon: Any, delta: Any = None, rho: Any = None) -> Any:
        self.calls.append((query, epsilon))
        return fake_release(query)


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def ns(host: Host) -> dict[str, Any]:
    return make_namespace(host, "ds")


# --- facade: values, immutability ----------------------------------------------------


def _facades(ns: dict[str, Any]) -> list[Any]:
    d = ns["dataset"]()
    return [
        d,
        d.group_by("g"),
        ns["col"]("x"),
        ns["count"](),
        ns["sum"]("x"),
        d.count(),
        ns["release"](d.count(), epsilon=1),
    ]


@pytest.mark.parametrize("index", range(7))
def test_facades_are_immutable(ns: dict[str, Any], index: int) -> None:
    obj = _facades(ns)[index]
    with pytest.raises(AttributeError, match="immutable"):
        obj.anything = 1
    for slot in type(obj).__slots__:
        with pytest.raises(AttributeError, match="immutable"):
            setattr(obj, slot, None)
        with pytest.raises(AttributeError, match="immutable"):
            delattr(obj, slot)
    assert not hasattr(obj, "__dict__")


def test_filter_returns_a_new_frame_and_leaves_the_original_alone(ns: dict[str, Any]) -> None:
    col = ns["col"]
    base = ns["dataset"]()
    adults = base.filter(col("age") >= 18)
    both = adults.filter(col("region") == "north")
    assert isinstance(adults, Frame) and adults is not base
    assert base._filters == ()
    assert adults._filters == (BinOp("ge", Col("age"), Lit(18)),)
    assert len(both._filters) == 2
    assert repr(base) == "<rows of 'ds'>"
    assert repr(adults) == "<rows of 'ds' where (col('age') ge 18)>"
    assert "col('region') eq 'north'" in repr(both)


def test_reprs_describe_the_plan(ns: dict[str, Any]) -> None:
    col, count, mean = ns["col"], ns["count"], ns["mean"]
    d = ns["dataset"]("stays")
    assert repr(d.group_by("region")) == "<<rows of 'stays'> grouped by region>"
    assert repr(d.agg(count(), mean("x"))) == "<plan count=count(), mean_x=mean(x) on 'stays'>"
    assert repr(d.group_by("r").sum("x")) == "<plan sum_x=sum(x) by r on 'stays'>"
    assert repr(count()) == "<aggregate count = count()>"
    assert repr(mean("x").alias("m")) == "<aggregate m = mean(x)>"
    expr = ~((col("a") + 1) * 2 > -col("b")) | col("c").is_in([1, "z"]) & col("d").is_null()
    assert repr(expr) == (
        "<expression (not((((col('a') add 1) mul 2) gt neg(col('b')))) or "
        "(col('c').is_in([1, 'z']) and is_null(col('d'))))>"
    )


def test_expressions_build_plan_nodes(ns: dict[str, Any]) -> None:
    col = ns["col"]
    a = col("a")
    cases = {
        "add": (a + 1, 1 + a),
        "sub": (a - 1, 1 - a),
        "mul": (a * 1, 1 * a),
        "truediv": (a / 1, 1 / a),
    }
    for op, (plain, reflected) in cases.items():
        assert plain._node == BinOp(op, Col("a"), Lit(1))
        assert reflected._node == BinOp(op, Lit(1), Col("a"))
    assert (a == None)._node == BinOp("eq", Col("a"), Lit(None))  # noqa: E711
    assert (a != "x")._node == BinOp("ne", Col("a"), Lit("x"))
    assert (a < 1)._node.op == "lt" and (a <= 1)._node.op == "le"
    assert (a > 1)._node.op == "gt" and (a >= 1)._node.op == "ge"
    assert (True & a)._node == BinOp("and", Lit(True), Col("a"))
    assert (False | a)._node == BinOp("or", Lit(False), Col("a"))
    assert (-a)._node == UnaryOp("neg", Col("a"))
    assert a.is_not_null()._node == UnaryOp("is_not_null", Col("a"))
    assert a.is_in(("x", 2, None))._node == IsIn(Col("a"), ("x", 2, None))
    # A released value is a constant in a later plan (post-processing).
    released = ns["release"](ns["dataset"]().count(), epsilon=1)
    assert (a > released)._node == BinOp("gt", Col("a"), Lit(42))


@pytest.mark.parametrize(
    "bad", [object(), [1], {"a": 1}, float("nan"), float("inf"), 2**64, b"x", "s" * 10_001]
)
def test_expression_constants_must_be_json_scalars(ns: dict[str, Any], bad: Any) -> None:
    with pytest.raises(TypeError, match="cannot use a"):
        ns["col"]("a") + bad


def test_is_in_validates_its_values(ns: dict[str, Any]) -> None:
    col = ns["col"]
    with pytest.raises(TypeError, match="not a string"):
        col("a").is_in("abc")
    with pytest.raises(PlanError):
        col("a").is_in([float("nan")])
    with pytest.raises(PlanError):
        col("a").is_in([col("b")])


def test_col_and_col_raises_a_helpful_type_error(ns: dict[str, Any]) -> None:
    col = ns["col"]
    with pytest.raises(TypeError, match=r"no truth value.*& \| ~"):
        col("a") and col("b")
    with pytest.raises(TypeError, match="no truth value"):
        not (col("a") > 1)
    with pytest.raises(TypeError, match="no truth value"):
        bool(col("a") == 1)
    with pytest.raises(TypeError, match="no truth value"):
        col("a") in [col("b")]  # noqa: B015
    with pytest.raises(TypeError):
        hash(col("a"))


def test_names_are_validated(ns: dict[str, Any]) -> None:
    for bad in ("", 3, None, ["a"]):
        with pytest.raises(PlanError):
            ns["col"](bad)
    for bad in ("", 3, ["a"]):
        with pytest.raises(PlanError):
            ns["dataset"](bad)
    assert ns["dataset"]()._dataset == "ds"
    assert ns["dataset"]("other")._dataset == "other"
    with pytest.raises(PlanError, match="column name"):
        ns["sum"](ns["col"]("a") + 1)
    with pytest.raises(PlanError, match="column name"):
        ns["mean"](3)
    with pytest.raises(PlanError):
        ns["dataset"]().filter("age > 18")
    with pytest.raises(PlanError):
        ns["dataset"]().group_by()
    with pytest.raises(PlanError):
        ns["dataset"]().group_by(3)


# --- aggregates, shapes, aliases -----------------------------------------------------


def test_default_aliases_and_alias(ns: dict[str, Any]) -> None:
    count, sum_, mean, col = ns["count"], ns["sum"], ns["mean"], ns["col"]
    assert count()._agg == Agg("count", None, None, "count")
    assert sum_("x")._agg == Agg("sum", "x", None, "sum_x")
    assert sum_(col("x"))._agg == Agg("sum", "x", None, "sum_x")
    assert mean("x")._agg == Agg("mean", "x", None, "mean_x")
    renamed = mean("x").alias("avg")
    assert renamed._agg.alias == "avg"
    assert isinstance(renamed, Aggregate)
    for bad in ("", "two words", "1x", 3, None):
        with pytest.raises(PlanError, match="alias"):
            count().alias(bad)


def test_shapes(ns: dict[str, Any]) -> None:
    count, mean = ns["count"], ns["mean"]
    d = ns["dataset"]()
    g = d.group_by("region", "repeat")
    assert isinstance(g, GroupedFrame)
    assert d.count()._q.shape == "scalar"
    assert d.sum("x")._q.shape == "scalar"
    assert d.mean("x", bounds=(0, 1))._q.aggs == (Agg("mean", "x", (0, 1), "mean_x"),)
    assert d.agg(count())._q.shape == "record"
    assert d.agg(count(), mean("x"))._q.shape == "record"
    table = g.agg(count(), mean("x"))
    assert isinstance(table, ReleasablePlan)
    assert table._q.shape == "table"
    assert table._q.group_by == ("region", "repeat")
    assert g.count()._q.shape == "table"
    assert g.sum("x")._q.shape == "table"


def test_agg_arguments(ns: dict[str, Any]) -> None:
    d = ns["dataset"]()
    with pytest.raises(PlanError, match="at least one"):
        d.agg()
    with pytest.raises(PlanError, match="takes aggregates"):
        d.agg("count")
    with pytest.raises(PlanError, match="takes aggregates"):
        d.agg(ns["count"](), d.count())


def test_duplicate_aliases_are_refused(ns: dict[str, Any]) -> None:
    count, sum_, mean = ns["count"], ns["sum"], ns["mean"]
    d = ns["dataset"]()
    with pytest.raises(PlanError, match=r"duplicate aggregate name\(s\) count"):
        d.agg(count(), count())
    with pytest.raises(PlanError, match="duplicate"):
        d.agg(sum_("x"), mean("y").alias("sum_x"))
    with pytest.raises(PlanError, match="clash with group_by"):
        d.group_by("count").agg(count())
    with pytest.raises(PlanError, match="twice"):
        d.group_by("a", "a").count()
    # .alias resolves the clash.
    assert d.agg(count(), count().alias("n"))._q.shape == "record"


@pytest.mark.parametrize("bounds", [(0, 10), [0, 10], (-1.5, 2), (0, 2**70)])
def test_valid_bounds(ns: dict[str, Any], bounds: Any) -> None:
    agg = ns["sum"]("x", bounds=bounds)._agg
    assert agg.bounds == tuple(bounds)
    assert isinstance(agg.bounds, tuple)


@pytest.mark.parametrize(
    "bounds",
    [
        (10, 0),
        (1, 1),
        (0, float("inf")),
        (float("-inf"), 0),
        (float("nan"), 1),
        (True, 2),
        (0, False),
        ("a", "b"),
        "ab",
        (0, "1"),
        5,
        (1, 2, 3),
        (1,),
        (None, 1),
        {"lo": 0, "hi": 1},
    ],
)
@pytest.mark.parametrize("fn", ["sum", "mean"])
def test_invalid_bounds(ns: dict[str, Any], fn: str, bounds: Any) -> None:
    with pytest.raises(PlanError, match="bounds"):
        ns[fn]("x", bounds=bounds)
    with pytest.raises(PlanError, match="bounds"):
        getattr(ns["dataset"](), fn)("x", bounds)


def test_bounds_with_a_huge_int_are_a_plan_error(ns: dict[str, Any]) -> None:
    # math.isfinite(10**400) overflows; the facade must still answer PlanError.
    with pytest.raises(PlanError, match="bounds"):
        ns["sum"]("x", bounds=(0, 10**400))


# --- sum: aggregate or builtin ---------------------------------------------------------


def test_sum_is_aggregate_for_columns_and_builtin_for_numbers(ns: dict[str, Any]) -> None:
    sum_ = ns["sum"]
    assert isinstance(sum_("x"), Aggregate)
    assert isinstance(sum_("x", bounds=(0, 1)), Aggregate)
    assert isinstance(sum_(ns["col"]("x")), Aggregate)
    assert sum_([1, 2, 3]) == 6
    assert sum_([1, 2], 10) == 13
    assert sum_(x for x in (0.5, 0.25)) == 0.75
    a = ns["release"](ns["dataset"]().count(), epsilon=1)
    assert sum_([a, a]) == 84
    assert sum_([a, 1], 0.5) == 43.5
    with pytest.raises(TypeError):
        sum_([1, "x"])


# --- release -----------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [None, True, False, [1], (1,), {"e": 1}, b"1", object()])
def test_release_validates_epsilon(ns: dict[str, Any], host: Host, epsilon: Any) -> None:
    with pytest.raises(PlanError, match="epsilon"):
        ns["release"](ns["dataset"]().count(), epsilon=epsilon)
    assert host.calls == []


def test_release_needs_an_epsilon(ns: dict[str, Any], host: Host) -> None:
    with pytest.raises(PlanError, match="needs an epsilon"):
        ns["release"](ns["dataset"]().count())
    assert host.calls == []


@pytest.mark.parametrize("epsilon", [1, 0.5, "1/2"])
def test_release_passes_the_epsilon_through(ns: dict[str, Any], host: Host, epsilon: Any) -> None:
    plan = ns["dataset"]().count()
    ns["release"](plan, epsilon=epsilon)
    assert host.calls == [(plan._q, epsilon)]


def test_release_refuses_anything_but_an_aggregate_plan(ns: dict[str, Any], host: Host) -> None:
    d = ns["dataset"]()
    for not_a_plan in (d, d.group_by("g"), ns["count"](), ns["col"]("x"), d.count()._q, None, 1):
        with pytest.raises(PlanError, match="takes an aggregate plan"):
            ns["release"](not_a_plan, epsilon=1)
    assert host.calls == []


def test_release_wraps_each_shape(ns: dict[str, Any]) -> None:
    count, mean, release = ns["count"], ns["mean"], ns["release"]
    d = ns["dataset"]()
    scalar = release(d.count(), epsilon=1)
    assert isinstance(scalar, Released)
    assert scalar.value == 42 and scalar.ci95 == (40, 44)
    assert scalar.aggregate == "count" and scalar.mechanism == "laplace"
    assert scalar.column is None and scalar.noise_scale is None
    record = release(d.agg(count(), mean("x")), epsilon=1)
    assert set(record) == {"count", "mean_x"}
    assert all(isinstance(v, Released) for v in record.values())
    table = release(d.group_by("g").agg(count()), epsilon=1)
    assert [row["g"] for row in table] == ["g-0", "g-1"]
    assert all(isinstance(row["count"], Released) for row in table)


def test_a_record_whose_aggregates_are_named_value_and_ci95_stays_a_record() -> None:
    raw = {"value": {"value": 1, "ci95": [0, 2]}, "ci95": {"value": 3, "ci95": [2, 4]}}
    record = wrap_release(raw, "record")
    assert set(record) == {"value", "ci95"}
    assert record["ci95"].value == 3


def test_released_values_post_process_like_numbers() -> None:
    a = Released({"value": 10, "ci95": [8, 12]})
    b = wrap_release({"value": 4.0, "ci95": [3.0, 5.0]}, "scalar")
    assert a + b == 14.0 and 1 + a == 11 and a - 1 == 9 and 20 - a == 10
    assert a * 2 == 20 and 2 * a == 20 and a / 4 == 2.5 and 40 / a == 4
    assert -a == -10 and float(a) == 10.0 and int(b) == 4 and round(b) == 4
    assert a > b and b < a and a >= 10 and a <= 10
    assert abs(-a) == 10 and a**2 == 100 and 2**b == 16 and a == 10 and a != b
    assert repr(a) == "10 (95% CI 8 .. 12)"
    assert result_to_json({"a": a}) == {
        "a": {
            "value": 10,
            "ci95": [8, 12],
            "aggregate": None,
            "column": None,
            "mechanism": None,
            "noise_scale": None,
        }
    }


# --- result -------------------------------------------------------------------------------


def test_result_to_json_keeps_constants_and_containers() -> None:
    assert result_to_json({"a": [1, 2.5, (True, None)], 3: "x"}) == {
        "a": [1, 2.5, [True, None]],
        "3": "x",
    }


def test_result_to_json_refuses_plans_and_non_json(ns: dict[str, Any]) -> None:
    for plan in _facades(ns)[:6]:
        with pytest.raises(ResultRejected, match="plans never leave"):
            result_to_json({"x": plan})
    for bad in (float("nan"), float("inf"), {1.5: 1}, {True: 1}, {1, 2}, b"x", object()):
        with pytest.raises(ResultRejected):
            result_to_json({"x": bad})
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ResultRejected, match="nested deeper"):
        result_to_json(deep)


# --- wire form: round trip ----------------------------------------------------------------


def _rich_query(ns: dict[str, Any]) -> Query:
    col, count, sum_, mean = ns["col"], ns["count"], ns["sum"], ns["mean"]
    a, b = col("a"), col("b")
    condition = (
        ((a + 1) * 2 - b / 3 >= 0.5)
        & ((a == "x") | (a != None))  # noqa: E711
        & ~(b < -1)
        & (b <= 2**40)
        & (a > True)
        & (-a).is_null()
        & b.is_not_null()
        & a.is_in(["x", 1, 2.5, None, False])
    )
    plan = (
        ns["dataset"]("stays")
        .filter(condition)
        .filter(col("c") == "é")
        .group_by("region", "repeat")
        .agg(count(), sum_("nights", bounds=(1, 14)), mean("spend", bounds=[0.0, 1e6]).alias("m"))
    )
    q: Query = plan._q
    return q


def test_round_trip(ns: dict[str, Any]) -> None:
    q = _rich_query(ns)
    wire = to_wire(q)
    assert from_wire(wire) == q
    # And through real strict JSON, as on the pipe.
    assert from_wire(json.loads(json.dumps(wire, allow_nan=False))) == q
    for shape_plan in (ns["dataset"]().count(), ns["dataset"]().agg(ns["count"]())):
        assert from_wire(to_wire(shape_plan._q)) == shape_plan._q


# --- wire form: hostile JSON --------------------------------------------------------------


def _base() -> dict[str, Any]:
    return {
        "dataset": "ds",
        "filters": [{"op": "gt", "args": [{"col": "a"}, {"lit": 1}]}],
        "group_by": ["g"],
        "aggs": [{"op": "sum", "column": "x", "bounds": [0, 10], "alias": "s"}],
        "shape": "table",
    }


def _with_filter(expr: Any) -> dict[str, Any]:
    raw = _base()
    raw["filters"] = [expr]
    return raw


def _with_agg(**changes: Any) -> dict[str, Any]:
    raw = _base()
    raw["aggs"][0].update(changes)
    return raw


def _changed(**changes: Any) -> dict[str, Any]:
    raw = _base()
    raw.update(changes)
    return raw


def _chain(depth: int) -> dict[str, Any]:
    expr: dict[str, Any] = {"col": "a"}
    for _ in range(depth):
        expr = {"op": "not", "args": [expr]}
    return expr


def _tree(levels: int) -> dict[str, Any]:
    if levels == 0:
        return {"col": "a"}
    return {"op": "and", "args": [_tree(levels - 1), _tree(levels - 1)]}


def test_base_wire_plan_is_valid() -> None:
    q = from_wire(_base())
    assert q.filters == (BinOp("gt", Col("a"), Lit(1)),)
    assert from_wire(_with_filter(_chain(MAX_DEPTH))).filters[0] is not None
    ok_in = {"op": "is_in", "args": [{"col": "a"}], "values": list(range(MAX_IN_VALUES))}
    assert len(from_wire(_with_filter(ok_in)).filters[0].values) == MAX_IN_VALUES


HOSTILE: dict[str, Any] = {
    # not a plan at all
    "none": None,
    "list": [],
    "string": "plan",
    "missing key": {k: v for k, v in _base().items() if k != "shape"},
    "extra key": _changed(code="import os"),
    # unknown operators
    "unknown binary op": _with_filter({"op": "pow", "args": [{"col": "a"}, {"lit": 2}]}),
    "dunder op": _with_filter({"op": "__class__", "args": [{"col": "a"}]}),
    "unknown agg": _with_agg(op="median"),
    "op without args": _with_filter({"op": "not"}),
    "binary with 1 arg": _with_filter({"op": "add", "args": [{"col": "a"}]}),
    "unary with 2 args": _with_filter({"op": "neg", "args": [{"col": "a"}, {"col": "b"}]}),
    "args not a list": _with_filter({"op": "neg", "args": {"col": "a"}}),
    "expression not a dict": _with_filter(["col", "a"]),
    "bare string expression": _with_filter("a > 1"),
    # extra keys
    "extra key in col": _with_filter({"col": "a", "as": "b"}),
    "extra key in lit": _with_filter({"lit": 1, "type": "int"}),
    "extra key in op": _with_filter({"op": "neg", "args": [{"col": "a"}], "x": 1}),
    "values on a non-is_in op": _with_filter({"op": "neg", "args": [{"col": "a"}], "values": []}),
    "is_in without values": _with_filter({"op": "is_in", "args": [{"col": "a"}]}),
    "extra key in agg": _with_agg(where="x"),
    "missing key in agg": {
        **_base(),
        "aggs": [{"op": "count", "column": None, "bounds": None}],
    },
    # NaN / inf
    "nan literal": _with_filter({"lit": float("nan")}),
    "inf literal": _with_filter({"lit": float("inf")}),
    "-inf literal": _with_filter({"lit": float("-inf")}),
    "nan in is_in": _with_filter(
        {"op": "is_in", "args": [{"col": "a"}], "values": [1, float("nan")]}
    ),
    "inf bound": _with_agg(bounds=[0, float("inf")]),
    "nan bound": _with_agg(bounds=[float("nan"), 1]),
    # bounds shape
    "bounds reversed": _with_agg(bounds=[10, 0]),
    "bounds equal": _with_agg(bounds=[1, 1]),
    "bounds of 3": _with_agg(bounds=[0, 1, 2]),
    "bool bounds": _with_agg(bounds=[False, True]),
    "string bounds": _with_agg(bounds=["0", "1"]),
    "bounds a dict": _with_agg(bounds={"lo": 0, "hi": 1}),
    # non-JSON types
    "bytes literal": _with_filter({"lit": b"x"}),
    "tuple literal": _with_filter({"lit": (1, 2)}),
    "list literal": _with_filter({"lit": [1]}),
    "dict literal": _with_filter({"lit": {"a": 1}}),
    "set literal": _with_filter({"lit": {1}}),
    "object literal": _with_filter({"lit": object()}),
    "complex literal": _with_filter({"lit": 1j}),
    "huge int literal": _with_filter({"lit": 2**64}),
    "huge string literal": _with_filter({"lit": "x" * 10_001}),
    "filters a tuple": _changed(filters=({"col": "a"},)),
    "group_by a string": _changed(group_by="g"),
    "bounds a tuple": _with_agg(bounds=(0, 1)),
    # non-string names
    "int column": _with_filter({"col": 1}),
    "None column": _with_filter({"col": None}),
    "list column": _with_filter({"col": ["a"]}),
    "empty column": _with_filter({"col": ""}),
    "long column": _with_filter({"col": "a" * 201}),
    "int group_by": _changed(group_by=[1]),
    "int agg column": _with_agg(column=1),
    "int alias": _with_agg(alias=1),
    "int dataset": _changed(dataset=1),
    "empty dataset": _changed(dataset=""),
    # shape and structure
    "unknown shape": _changed(shape="matrix"),
    "list shape": _changed(shape=["table"]),
    "table without group_by": _changed(group_by=[]),
    "scalar with group_by": _changed(shape="scalar"),
    "record with group_by": _changed(shape="record"),
    "no aggs": _changed(aggs=[]),
    "101 aggs": _changed(
        aggs=[{"op": "count", "column": None, "bounds": None, "alias": f"c{i}"} for i in range(101)]
    ),
    "9 group_by": _changed(group_by=[f"g{i}" for i in range(9)]),
    "101 filters": _changed(filters=[{"col": "a"}] * 101),
    "count with column": _with_agg(op="count"),
    "sum without column": _with_agg(column=None),
    "duplicate alias": _changed(aggs=[_base()["aggs"][0]] * 2),
    "alias clashes with group_by": _with_agg(alias="g"),
    # sizes
    "deep expression (65)": _with_filter(_chain(MAX_DEPTH + 1)),
    "very deep expression": _with_filter(_chain(50_000)),
    "huge plan (> 2000 nodes)": _with_filter(_tree(11)),
    "huge plan across filters": _changed(filters=[_tree(5)] * 40),
    "huge is_in list": _with_filter(
        {"op": "is_in", "args": [{"col": "a"}], "values": list(range(MAX_IN_VALUES + 1))}
    ),
    "is_in values not a list": _with_filter(
        {"op": "is_in", "args": [{"col": "a"}], "values": "abc"}
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_from_wire_rejects_hostile_json(name: str) -> None:
    with pytest.raises(PlanError):
        from_wire(HOSTILE[name])


def test_node_and_depth_limits_are_the_documented_ones() -> None:
    assert MAX_NODES == 2000 and MAX_DEPTH == 64
    with pytest.raises(PlanError, match="too large"):
        from_wire(_with_filter(_tree(11)))
    with pytest.raises(PlanError, match="nested deeper"):
        from_wire(_with_filter(_chain(MAX_DEPTH + 1)))
    with pytest.raises(PlanError, match="is_in"):
        from_wire(HOSTILE["huge is_in list"])


# Hostile inputs that once escaped as TypeError / OverflowError (which the service
# would classify as an internal error) instead of the documented PlanError.
UNHASHABLE_OR_HUGE: dict[str, Any] = {
    "unhashable expression op (list)": _with_filter({"op": [], "args": []}),
    "unhashable expression op (dict)": _with_filter({"op": {}, "args": [{"col": "a"}]}),
    "unhashable aggregate op": _with_agg(op=["sum"]),
    "huge int bound": _with_agg(bounds=[0, 10**400]),
    "huge int bound from JSON text": _with_agg(bounds=json.loads("[0, 1" + "0" * 400 + "]")),
}


@pytest.mark.parametrize("name", list(UNHASHABLE_OR_HUGE))
def test_from_wire_rejects_hostile_json_with_plan_error_only(name: str) -> None:
    with pytest.raises(PlanError):
        from_wire(UNHASHABLE_OR_HUGE[name])


def test_from_wire_accepts_finite_extremes() -> None:
    q = from_wire(_with_filter({"lit": 2**63 - 1}))
    assert q.filters == (Lit(2**63 - 1),)
    q = from_wire(_with_agg(bounds=[-1e308, 1e308]))
    assert q.aggs[0].bounds == (-1e308, 1e308)
    assert math.isfinite(q.aggs[0].bounds[1])
