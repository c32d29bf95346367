"""Private group keys over the real server: δ is granted, charged, previewed, shown."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from enclave import Client, JobFailed

SCHEMA = """
max_rows = 100000
[columns.city]
type = "string"
[columns.nights]
type = "int"
bounds = [1, 14]
"""
SCRIPT = """
rows = release(dataset().group_by("city").agg(count(), mean("nights")), epsilon=1, delta=1e-7)
result["cities"] = [row["city"] for row in rows]
result["rows"] = rows
"""


@pytest.fixture(scope="module")
def cities(server, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cities") / "cities.csv"
    lines = ["city,nights"] + ["paris,3"] * 700 + ["lyon,5"] * 300 + ["hamlet,2"]
    path.write_text("\n".join(lines) + "\n")
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("cities", path, SCHEMA)
    return "cities"


def researcher(server, name: str, delta: str) -> str:
    token = server.researcher(None, name=name)
    with Client(server.address, server.provider_token) as provider:
        provider.grant("cities", name, 2, delta)
    return token


def test_keys_are_released_by_threshold_and_delta_is_charged(server, cities) -> None:
    token = researcher(server, "city_user", "1e-6")
    with Client(server.address, token) as client:
        estimate = client.estimate(SCRIPT, cities)
        job = client.run(SCRIPT, cities)
        [budget] = client.budget()
    assert job.result["cities"] == ["lyon", "paris"]
    assert (estimate.epsilon, estimate.delta) == (job.cost_epsilon, job.cost_delta)
    assert job.cost_delta == Decimal("1E-7")
    assert budget.delta_spent == Decimal("1E-7")
    assert budget.delta_remaining == Decimal("9E-7")
    assert budget.epsilon_spent == 1
    [entry] = server.app.ledger.entries(job_id=job.job_id)
    assert entry.delta == Decimal("1E-7")
    server.app.ledger.verify()


def test_without_a_delta_grant_private_keys_are_refused_and_nothing_is_charged(
    server, cities
) -> None:
    token = researcher(server, "city_pure", "0")
    with Client(server.address, token) as client:
        with pytest.raises(JobFailed) as err:
            client.run(SCRIPT, cities)
        [budget] = client.budget()
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "requested delta=1E-7" in err.value.message
    assert (budget.epsilon_spent, budget.delta_spent) == (0, 0)


def test_forgetting_delta_is_a_clear_error(server, cities) -> None:
    token = researcher(server, "city_forgetful", "1e-6")
    script = 'release(dataset().group_by("city").count(), epsilon=1)'
    with Client(server.address, token) as client, pytest.raises(JobFailed) as err:
        client.run(script, cities)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "delta" in err.value.message


def test_a_regrant_without_delta_keeps_the_delta_cap(server, cities) -> None:
    researcher(server, "city_regrant", "1e-6")
    with Client(server.address, server.provider_token) as provider:
        grant = provider.grant("cities", "city_regrant", 5)
    assert grant.delta_cap == "0.000001"
    assert grant.epsilon_cap == "5"
