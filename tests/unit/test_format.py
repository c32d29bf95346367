"""The CLI's rendering of results: every kind of released value is shown with its accuracy."""

from __future__ import annotations

from enclave._format import is_released, result


def test_a_count_shows_its_interval() -> None:
    value = {"value": 1200, "ci95": [1190.5, 1209.5], "aggregate": "count"}
    assert is_released(value)
    assert result(value) == "1,200  (95% CI 1,190.5 .. 1,209.5)"


def test_a_quantile_shows_its_rank_error_in_rows() -> None:
    value = {
        "value": 42.5,
        "ci95": None,
        "rank_error": 148.4,
        "q": 0.5,
        "aggregate": "quantile",
    }
    assert is_released(value)
    assert result({"median_age": value}) == ("median_age: 42.5  (95%: rank ±148 rows)")


def test_grouped_quantiles_render_as_a_table() -> None:
    rows = [
        {"g": "a", "q": {"value": 3, "ci95": None, "rank_error": 9.2, "aggregate": "quantile"}},
        {"g": "b", "q": {"value": 5, "ci95": None, "rank_error": 9.2, "aggregate": "quantile"}},
    ]
    text = result(rows)
    assert "3  (95%: rank ±9 rows)" in text
    assert text.splitlines()[0].split() == ["g", "q"]


def test_a_dict_that_only_looks_released_is_shown_as_data() -> None:
    assert not is_released({"value": 1, "ci95": None})
    assert not is_released({"value": 1, "aggregate": "quantile", "rank_error": "many"})


def test_a_huge_rho_shows_an_infinite_equivalent_instead_of_failing() -> None:
    """OpenDP's zCDP conversion overflows beyond rho ~ 70,000: budgets still render."""
    from decimal import Decimal

    from budget import Balance
    from enclave._servicers import budget_to_proto
    from jobs import zcdp_epsilon

    assert zcdp_epsilon(Decimal(100_000), 1e-6) == float("inf")
    balance = Balance("d", "alice", Decimal(0), Decimal(0), rho_cap=Decimal(100_000))
    wire = budget_to_proto(balance, lambda _name: 1e-6)
    assert wire.epsilon_equivalent_remaining == "Infinity"
    assert wire.rho_remaining == "100000"


def test_suppression_blanks_small_cells_in_every_shape() -> None:
    from jobs._compiler import suppress
    from jobs._plan import Agg, Query

    def cell(v: float) -> dict[str, object]:
        return {"value": v, "ci95": [v - 1, v + 1], "aggregate": "count", "mechanism": "m"}

    count, total = Agg("count", None, None, "n"), Agg("sum", "x", None, "s")
    table = Query("t", (), ("g",), (count, total), "table")
    rows = [{"g": "a", "n": cell(50), "s": cell(9)}, {"g": "b", "n": cell(3), "s": cell(1)}]
    out = suppress(rows, table, 10)
    assert out[0] == rows[0]
    assert out[1]["g"] == "b"
    assert out[1]["n"] == {
        "value": None,
        "ci95": None,
        "aggregate": "count",
        "mechanism": "m",
        "suppressed": 10,
    }
    assert out[1]["s"]["value"] is None
    scalar = Query("t", (), (), (count,), "scalar")
    assert suppress(cell(3), scalar, 10)["suppressed"] == 10
    assert suppress(cell(30), scalar, 10) == cell(30)
    no_count = Query("t", (), (), (total,), "scalar")
    assert suppress(cell(3), no_count, 10) == cell(3)  # nothing decides: left as released
    assert result({"n": out[1]["n"]}) == "n: suppressed (count < 10)"
