"""Very small and very large epsilon (within the ledger's range) price and release,
or fail with a message that says what to change; nothing in between crashes."""

from __future__ import annotations

import math
from decimal import Decimal

import polars as pl
import pytest

from jobs import DatasetHandle, PlanError, Schema
from jobs._compiler import evaluate, price
from jobs._plan import Agg, Query

SCHEMA = Schema.from_dict(
    {
        "max_rows": 1_000_000,
        "columns": {
            "x": {"type": "float", "bounds": [0, 100]},
            "n": {"type": "int", "bounds": [0, 10]},
            "c": {"type": "string"},
        },
    }
)
PLANS = {
    "count": Query("t", (), (), (Agg("count", None, None, "n"),), "scalar"),
    "float sum": Query("t", (), (), (Agg("sum", "x", None, "s"),), "scalar"),
    "int sum": Query("t", (), (), (Agg("sum", "n", None, "s"),), "scalar"),
    "mean": Query("t", (), (), (Agg("mean", "x", None, "m"),), "scalar"),
    "variance": Query("t", (), (), (Agg("variance", "x", None, "v"),), "scalar"),
}


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> DatasetHandle:
    path = tmp_path_factory.mktemp("eps") / "d.parquet"
    pl.DataFrame({"x": [1.0] * 100, "n": [1] * 100, "c": ["a"] * 100}).write_parquet(path)
    return DatasetHandle("t", SCHEMA, path)


@pytest.mark.parametrize("epsilon", ["1e-9", "0.001", "100", "1000000"])
@pytest.mark.parametrize("name", sorted(PLANS))
def test_extreme_epsilons_price_within_the_charge_and_release(
    handle: DatasetHandle, name: str, epsilon: str
) -> None:
    priced = price(PLANS[name], handle, Decimal(epsilon))
    assert priced.measurement.map(1) <= float(epsilon)
    value = evaluate(priced)
    lo, hi = value["ci95"]
    assert lo <= value["value"] <= hi


ZCDP = Schema.from_dict({**SCHEMA.to_dict(), "privacy_definition": "zcdp"})


@pytest.mark.parametrize("rho", ["1e-12", "1e-6", "100", "1000000"])
@pytest.mark.parametrize("name", sorted(PLANS))
def test_extreme_rhos_price_within_the_charge_and_release(
    handle: DatasetHandle, name: str, rho: str
) -> None:
    priced = price(PLANS[name], DatasetHandle("t", ZCDP, handle.path), Decimal(rho))
    assert priced.measurement.map(1) <= float(rho)
    value = evaluate(priced)
    lo, hi = value["ci95"]
    assert lo <= value["value"] <= hi
    assert all(math.isfinite(x) for x in (lo, hi, value["value"]))


@pytest.mark.parametrize(
    ("epsilon", "delta", "fragment"),
    [("1e-9", "1e-7", "raise delta"), ("1000", "1e-7", "too large")],
)
def test_private_keys_at_extreme_epsilon_say_what_to_change(
    handle: DatasetHandle, epsilon: str, delta: str, fragment: str
) -> None:
    query = Query("t", (), ("c",), (Agg("count", None, None, "n"),), "table")
    with pytest.raises(PlanError, match=fragment):
        price(query, handle, Decimal(epsilon), Decimal(delta))


@pytest.mark.parametrize("scale", [0.5, 2.0, 7.0, 40.0])
@pytest.mark.parametrize("alpha", [0.05, 0.025, 0.05 / 3])
def test_exact_integer_half_width_agrees_with_opendp_where_it_is_finite(
    scale: float, alpha: float
) -> None:
    import math

    from opendp.accuracy import discrete_laplacian_scale_to_accuracy

    from jobs._compiler import _half_width

    opendp = discrete_laplacian_scale_to_accuracy(scale, alpha)
    ours = _half_width(
        {"accuracy": -math.inf, "scale": scale, "distribution": "Integer Laplace"}, alpha
    )
    # |X| <= ours  <=>  |X| <= opendp for integer noise: same coverage.
    assert ours == math.floor(opendp)
