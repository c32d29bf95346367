"""Derived columns: bounds by interval arithmetic, nulls filled explicitly, and the
released values match the truth computed by Polars (at a large epsilon)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from jobs import DatasetHandle, PlanError, Schema
from jobs._compiler import evaluate, price, with_derived
from jobs._plan import (
    Agg,
    BinOp,
    Cast,
    Clip,
    Col,
    FillNull,
    Lit,
    Query,
    UnaryOp,
    When,
    from_wire,
    to_wire,
)

SCHEMA = Schema.from_dict(
    {
        "columns": {
            "a": {"type": "int", "bounds": [0, 10]},
            "f": {"type": "float", "bounds": [-1, 1]},
            "n": {"type": "float", "bounds": [0, 5], "nullable": True},
            "g": {"type": "category", "categories": ["x", "y"]},
        }
    }
)
FRAME = pl.DataFrame(
    {
        "a": [1, 2, 3, 4] * 50,
        "f": [0.5, -0.5, 0.25, 0.0] * 50,
        "n": [1.0, None, 2.0, None] * 50,
        "g": ["x", "y", "x", "x"] * 50,
    }
)


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> DatasetHandle:
    path = tmp_path_factory.mktemp("derived") / "d.parquet"
    FRAME.write_parquet(path)
    return DatasetHandle("t", SCHEMA, path)


def derived(expr: object, *aggs: Agg, filters: tuple = ()) -> Query:
    return Query(
        "t", filters, (), aggs or (Agg("sum", "d", None, "s"),), "record", derived=(("d", expr),)
    )


@pytest.mark.parametrize(
    ("expr", "type_", "bounds", "nullable"),
    [
        (BinOp("add", Col("a"), Col("a")), "int", (0, 20), False),
        (BinOp("sub", Col("a"), Col("f")), "float", (-1, 11), False),
        (BinOp("mul", Col("f"), Lit(-3)), "float", (-3, 3), False),
        (BinOp("truediv", Col("a"), Lit(2)), "float", (0, 5), False),
        (BinOp("truediv", Col("a"), Col("f")), "float", None, True),  # x / 0 is null
        (BinOp("truediv", Col("f"), Col("a")), "float", (-1, 1), True),  # int a: |a| >= 1
        (BinOp("truediv", Col("a"), BinOp("sub", Col("a"), Lit(5))), "float", (-10, 10), True),
        (Clip(Col("f"), 0, 0.5), "float", (0, 0.5), False),
        (Clip(Col("a"), 2, 3), "int", (2, 3), False),
        (FillNull(Col("n"), 9.0), "float", (0, 9), False),
        (BinOp("mul", Col("n"), Lit(2.0)), "float", (0, 10), True),
        (Cast(Col("f"), "int"), "int", (-1, 1), False),
        (BinOp("ge", Col("a"), Lit(3)), "bool", None, False),
        (When(BinOp("ge", Col("a"), Lit(3)), Lit(1), Lit(5)), "int", (1, 5), False),
        (When(BinOp("ge", Col("a"), Lit(3)), Col("a"), Col("f")), "float", (-1, 10), False),
        (When(BinOp("gt", Col("n"), Lit(1)), Col("f"), Lit(0.0)), "float", (-1, 1), False),
    ],
)
def test_derived_types_and_bounds(expr, type_, bounds, nullable) -> None:
    spec = with_derived(derived(expr), SCHEMA).column("d")
    assert spec is not None
    assert spec.type == type_
    assert spec.bounds == bounds
    assert spec.nullable == nullable


def test_released_values_match_polars(handle: DatasetHandle) -> None:
    query = Query(
        "t",
        (Col("big"),),
        (),
        (
            Agg("sum", "twice", None, "s"),
            Agg("sum", "filled", None, "t"),
            Agg("count", None, None, "c"),
        ),
        "record",
        derived=(
            ("twice", BinOp("mul", Col("a"), Lit(2))),
            ("filled", FillNull(Col("n"), 0.0)),
            ("big", BinOp("ge", Col("a"), Lit(3))),
        ),
    )
    out = evaluate(price(query, handle, Decimal(10_000)))
    big = FRAME.filter(pl.col("a") >= 3)
    assert out["s"]["value"] == pytest.approx(int((big["a"] * 2).sum()), abs=5)
    assert out["t"]["value"] == pytest.approx(float(big["n"].fill_null(0).sum()), abs=5)
    assert out["c"]["value"] == pytest.approx(big.height, abs=5)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        (derived(BinOp("mul", Col("n"), Lit(2.0))), "fill them first"),
        (derived(BinOp("truediv", Col("a"), Col("f"))), "division by 0"),
        (derived(FillNull(BinOp("truediv", Col("a"), Col("f")), 0.0)), "no known bounds"),
        (
            Query(
                "t", (), (), (Agg("count", None, None, "c"),), "record", derived=(("a", Lit(1)),)
            ),
            "already exists",
        ),
        (
            Query(
                "t",
                (),
                ("d",),
                (Agg("count", None, None, "c"),),
                "table",
                derived=(("d", BinOp("mul", Col("f"), Lit(2.0))),),
            ),
            "keys are not public",
        ),
        (derived(FillNull(Col("n"), "zero")), "fill_null"),
        (derived(Clip(Col("g"), 0, 1)), "clip"),
        (derived(BinOp("mul", Col("a"), Lit(10**17))), "too wide"),
        (derived(When(Col("a"), Lit(1), Lit(2))), "takes a condition"),
        (derived(When(BinOp("gt", Col("a"), Lit(1)), Col("n"), Lit(0.0))), "fill it first"),
        (derived(When(BinOp("gt", Col("a"), Lit(1)), Lit(True), Lit(2))), "both branches"),
        (derived(When(BinOp("gt", Col("a"), Lit(1)), Col("g"), Lit("x"))), "both branches"),
        (derived(When(BinOp("gt", Col("a"), Lit(1)), Lit(None), Lit(2))), "cannot be None"),
    ],
)
def test_invalid_derived_columns_are_plan_errors(query: Query, fragment: str, handle) -> None:
    with pytest.raises(PlanError, match=fragment):
        price(query, handle, Decimal(1))


def test_a_researcher_clamp_makes_an_unbounded_column_summable(handle: DatasetHandle) -> None:
    query = derived(
        FillNull(BinOp("truediv", Col("a"), Col("f")), 0.0), Agg("sum", "d", (-10, 10), "s")
    )
    priced = price(query, handle, Decimal(1))
    # scale = 10 / epsilon, plus OpenDP's allowance for float rounding
    assert 10.0 <= priced.accuracy["s"][1] < 11.0
    evaluate(priced)


def test_derived_columns_survive_the_wire() -> None:
    query = derived(Cast(Clip(FillNull(Col("n"), 1.0), 0, 2), "int"))
    assert from_wire(to_wire(query)) == query


def test_the_job_api_with_columns(tmp_path: Path) -> None:
    from jobs._api import make_namespace

    seen = []

    def host(q: Query, _epsilon: object, _delta: object = None, _rho: object = None) -> object:
        seen.append(q)
        return {"value": 1, "ci95": [1, 1]}

    ns = make_namespace(host, "t")
    col = ns["col"]
    frame = ns["dataset"]().with_columns(
        per=(col("a") / 2).clip(0, 3), filled=col("n").fill_null(0), whole=col("f").cast("int")
    )
    ns["release"](frame.filter(col("per") > 1).sum("per"), epsilon=1)
    assert [name for name, _ in seen[0].derived] == ["per", "filled", "whole"]
    with pytest.raises(PlanError):
        col("a").cast("text")
    with pytest.raises(PlanError):
        col("a").clip(3, 1)


def test_when_then_otherwise_matches_polars(handle: DatasetHandle) -> None:
    """Compiled to arithmetic for OpenDP, it gives exactly Polars' when/then/otherwise,
    including a null condition (false) and boolean branches."""
    from jobs._api import make_namespace

    seen: list[Query] = []
    ns = make_namespace(lambda q, _e, _d=None, _r=None: seen.append(q) or {}, "t")
    col, when = ns["col"], ns["when"]
    frame = ns["dataset"]().with_columns(
        band=when(col("a") <= 1).then(10).when(col("a") <= 3).then(20).otherwise(30),
        pick=when(col("n") > 1).then(col("f")).otherwise(col("a") / 10),
        flag=when(col("g") == "x").then(col("a") >= 2).otherwise(col("f") < 0),
    )
    ns["release"](frame.agg(ns["sum"]("band"), ns["sum"]("pick"), ns["sum"]("flag")), 1)
    query = from_wire(to_wire(seen[0]))
    out = evaluate(price(query, handle, Decimal(100_000)))
    a, f, n, g = pl.col("a"), pl.col("f"), pl.col("n"), pl.col("g")
    truth = FRAME.select(
        pl.when(a <= 1).then(10).when(a <= 3).then(20).otherwise(30).sum().alias("band"),
        pl.when(n > 1).then(f).otherwise(a / 10).sum().alias("pick"),
        pl.when(g == "x").then(a >= 2).otherwise(f < 0).sum().alias("flag"),
    ).row(0, named=True)
    assert out["sum_band"]["value"] == pytest.approx(truth["band"], abs=2)
    assert out["sum_pick"]["value"] == pytest.approx(truth["pick"], abs=2)
    assert out["sum_flag"]["value"] == pytest.approx(truth["flag"], abs=2)


def test_when_needs_then_and_otherwise() -> None:
    from jobs._api import make_namespace

    ns = make_namespace(lambda *_: {}, "t")
    col, when = ns["col"], ns["when"]
    with pytest.raises(PlanError, match="otherwise"):
        ns["dataset"]().with_columns(x=when(col("a") > 1).then(1))
    with pytest.raises(PlanError, match="then"):
        when(col("a") > 1).otherwise(2)
    with pytest.raises(PlanError, match="then"):
        when(col("a") > 1).when(col("a") > 2)
    with pytest.raises(PlanError, match="condition"):
        when("a > 1")
    assert "when(" in repr(when(col("a") > 1).then(1).otherwise(2))


def test_select_scopes_the_columns_later_steps_may_use() -> None:
    from jobs._api import make_namespace

    seen: list[Query] = []
    ns = make_namespace(lambda q, _e, _d=None, _r=None: seen.append(q) or {}, "t")
    col = ns["col"]
    picked = ns["dataset"]().select("a", "g", half=col("f") / 2)
    for step in (
        lambda: picked.filter(col("f") > 0),
        lambda: picked.sum("f"),
        lambda: picked.group_by("n"),
        lambda: picked.with_columns(m=col("n").fill_null(0)),
        lambda: picked.select("f"),
        lambda: picked.group_by("g").agg(ns["mean"]("f")),
    ):
        with pytest.raises(PlanError, match="dropped by select"):
            step()
    ns["release"](picked.filter(col("a") > 1).group_by("g").agg(ns["sum"]("half")), 1)
    assert seen[0].derived == (("half", BinOp("truediv", Col("f"), Lit(2))),)


def test_division_by_zero_is_null_never_nan(tmp_path: Path) -> None:
    """Polars gives inf or NaN for x / 0, which OpenDP would silently replace by the
    middle of the bounds; Enclave makes it null, so the researcher fills it explicitly."""
    schema = Schema.from_dict(
        {
            "columns": {
                "x": {"type": "float", "bounds": [0, 10]},
                "k": {"type": "int", "bounds": [0, 4]},
            }
        }
    )
    path = tmp_path / "z.parquet"
    pl.DataFrame({"x": [0.0, 1.0, 6.0, 8.0], "k": [0, 0, 3, 4]}).write_parquet(path)
    handle = DatasetHandle("t", schema, path)
    ratio = BinOp("truediv", Col("x"), Col("k"))
    query = Query(
        "t",
        (),
        (),
        (Agg("sum", "r", None, "s"), Agg("sum", "missing", None, "m")),
        "record",
        derived=(
            ("r", FillNull(ratio, -1.0)),
            ("missing", UnaryOp("is_null", ratio)),
        ),
    )
    assert with_derived(query, schema).column("r").bounds == (-1, 10)  # k >= 1 where not null
    out = evaluate(price(query, handle, Decimal(100_000)))
    assert out["s"]["value"] == pytest.approx(-1 - 1 + 2 + 2, abs=0.01)
    assert out["m"]["value"] == 2


def test_grouping_on_derived_columns_with_public_keys(handle: DatasetHandle) -> None:
    """A when/then band and a comparison are groupable: their keys follow from their
    derived type and bounds; every key comes back, absent ones as noisy zeros."""
    band = When(
        BinOp("le", Col("a"), Lit(1)), Lit(1), When(BinOp("le", Col("a"), Lit(3)), Lit(2), Lit(3))
    )
    query = Query(
        "t",
        (),
        ("g", "band", "big"),
        (Agg("count", None, None, "n"), Agg("sum", "f", None, "s")),
        "table",
        derived=(("band", band), ("big", BinOp("ge", Col("a"), Lit(3)))),
    )
    out = evaluate(price(from_wire(to_wire(query)), handle, Decimal(100_000)))
    assert [(r["g"], r["band"], r["big"]) for r in out] == [
        (g, b, big) for g in ("x", "y") for b in (1, 2, 3) for big in (False, True)
    ]
    a = pl.col("a")
    truth = (
        FRAME.with_columns(
            pl.when(a <= 1).then(1).when(a <= 3).then(2).otherwise(3).alias("band"),
            (a >= 3).alias("big"),
        )
        .group_by("g", "band", "big")
        .agg(pl.len().alias("n"), pl.col("f").sum().alias("s"))
    )
    expected = {(r["g"], r["band"], r["big"]): r for r in truth.iter_rows(named=True)}
    for row in out:
        want = expected.get((row["g"], row["band"], row["big"]), {"n": 0, "s": 0.0})
        assert row["n"]["value"] == pytest.approx(want["n"], abs=2)
        assert row["s"]["value"] == pytest.approx(want["s"], abs=2)


def test_review_fixes_for_types_bounds_and_nulls(tmp_path: Path) -> None:
    """Float fills make floats; unbounded operands must be clipped before arithmetic or
    when/then (inf would turn into NaN); an overflowing int cast is nullable; a
    nullable derived key keeps its null rows as a group of their own."""
    schema = Schema.from_dict(
        {
            "columns": {
                "ni": {"type": "int", "bounds": [0, 3], "nullable": True},
                "f": {"type": "float", "bounds": [-1, 1]},
            }
        }
    )
    path = tmp_path / "r.parquet"
    pl.DataFrame({"ni": [1, None, 3, None] * 50, "f": [0.5, 0.25, -0.5, 1.0] * 50}).write_parquet(
        path
    )
    handle = DatasetHandle("t", schema, path)
    filled = FillNull(Col("ni"), 0.5)
    spec = with_derived(derived(filled), schema).column("d")
    assert spec is not None
    assert (spec.type, spec.bounds) == ("float", (0, 3))
    out = evaluate(price(derived(filled), handle, Decimal(100_000)))
    assert out["s"]["mechanism"] == "Float Laplace"
    assert out["s"]["value"] == pytest.approx(50 * (1 + 0.5 + 3 + 0.5), abs=0.5)

    unbounded = FillNull(BinOp("truediv", Lit(1.0), Col("f")), 0.0)
    for expr, fragment in (
        (BinOp("mul", unbounded, unbounded), "without known bounds"),
        (When(BinOp("gt", Col("f"), Lit(0.0)), Lit(0.0), unbounded), "no known bounds"),
    ):
        with pytest.raises(PlanError, match=fragment):
            price(derived(expr, Agg("sum", "d", (0, 1), "s")), handle, Decimal(1))
    clipped = Clip(unbounded, -10, 10)
    price(derived(BinOp("mul", clipped, clipped)), handle, Decimal(1))
    cast = with_derived(derived(Cast(unbounded, "int")), schema).column("d")
    assert cast is not None
    assert cast.nullable

    query = Query(
        "t",
        (),
        ("big",),
        (Agg("count", None, None, "n"),),
        "table",
        derived=(("big", BinOp("ge", Col("ni"), Lit(2))),),
    )
    rows = evaluate(price(query, handle, Decimal(100_000)))
    assert [r["big"] for r in rows] == [False, True, None]
    assert [r["n"]["value"] for r in rows] == pytest.approx([50, 50, 100], abs=2)


def test_float_clip_bounds_on_an_int_column_make_a_float(tmp_path: Path) -> None:
    """Polars would truncate clip(0.5, 2.5) on an int column to clip(0, 2)."""
    schema = Schema.from_dict({"columns": {"n": {"type": "int", "bounds": [0, 3]}}})
    path = tmp_path / "c.parquet"
    pl.DataFrame({"n": [0, 1, 2, 3] * 25}).write_parquet(path)
    query = derived(Clip(Col("n"), 0.5, 2.5))
    out = evaluate(price(query, DatasetHandle("t", schema, path), Decimal(100_000)))
    assert out["s"]["mechanism"] == "Float Laplace"
    assert out["s"]["value"] == pytest.approx(25 * (0.5 + 1 + 2 + 2.5), abs=0.5)
