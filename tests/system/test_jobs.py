"""The job path over a real gRPC server and a real SQLite ledger."""

from __future__ import annotations

import math
import threading
import time
from decimal import Decimal

import grpc
import pytest

from enclave import Client, JobFailed

# For Laplace noise of scale b, P(|noise| > b * ln(1/p)) = p. With p = 1e-9 per
# released value, the tolerances below fail spuriously with probability < 1e-7
# over the whole suite.
TAIL = math.log(1e9)


def within_noise(released: dict, truth: float) -> bool:
    return abs(released["value"] - truth) <= released["noise_scale"] * TAIL


def spent(server, name_token: str) -> Decimal:
    with Client(server.address, name_token) as c:
        [b] = c.budget("stays")
        return b.epsilon_spent


def test_count_sum_mean_are_close_to_the_truth_and_charged_exactly(server, rows) -> None:
    token = server.researcher("3")
    script = """
stays = dataset("stays")
result["n"] = release(stays.count(), epsilon=0.3)
result["nights"] = release(stays.sum("nights"), epsilon=0.2)
result["spend"] = release(stays.mean("spend"), epsilon=0.5)
result["adults_over_60"] = release(stays.filter(col("age") > 60).count(), epsilon=0.25)
"""
    with Client(server.address, token) as client:
        job = client.run(script, "stays")
        [budget] = client.budget()
    r = job.result
    assert within_noise(r["n"], len(rows))
    assert within_noise(r["nights"], sum(x["nights"] for x in rows))
    assert within_noise(r["adults_over_60"], sum(1 for x in rows if x["age"] > 60))
    true_mean = sum(x["spend"] for x in rows) / len(rows)
    assert abs(r["spend"]["value"] - true_mean) < 5  # sum scale 1000, count ~4000
    for value in r.values():
        lo, hi = value["ci95"]
        assert lo <= value["value"] <= hi
    # The budget drops by exactly the declared cost, in exact decimal arithmetic.
    assert job.cost_epsilon == Decimal("1.25")
    assert [rel.epsilon for rel in job.releases] == [
        Decimal(x) for x in ("0.3", "0.2", "0.5", "0.25")
    ]
    assert budget.epsilon_spent == Decimal("1.25")
    assert budget.epsilon_remaining == Decimal("1.75")
    entries = server.app.ledger.entries(job_id=job.job_id)
    assert [e.epsilon for e in entries] == [Decimal(x) for x in ("0.3", "0.2", "0.5", "0.25")]
    server.app.ledger.verify()


def test_group_by_public_keys_returns_every_key_in_order(server, rows) -> None:
    token = server.researcher("1")
    script = 'result["by_region"] = release(dataset().group_by("region").agg(count(), mean("nights")), epsilon=1)'
    with Client(server.address, token) as client:
        job = client.run(script, "stays")
    table = job.result["by_region"]
    assert [row["region"] for row in table] == ["north", "south", "east", "west"]
    for row in table:
        truth = sum(1 for x in rows if x["region"] == row["region"])
        assert within_noise(row["count"], truth)  # "west" is absent: a noisy zero
        assert 1 <= row["mean_nights"]["value"] <= 14


def test_same_request_id_is_one_job_one_result_one_charge(server) -> None:
    token = server.researcher("1")
    script = 'result["n"] = release(dataset().count(), epsilon=0.4)'
    with Client(server.address, token) as client:
        first = client.submit(script, "stays", request_id="req-42", wait=False)
        second = client.submit(script, "stays", request_id="req-42", wait=True)
        third = client.submit(script, "stays", request_id="req-42", wait=True)
        assert first.job_id == second.job_id == third.job_id
        assert second.result == third.result
        assert len(client.list_jobs()) == 1
        [budget] = client.budget()
        assert budget.epsilon_spent == Decimal("0.4")
        with pytest.raises(grpc.RpcError) as err:
            client.submit(script + "\n", "stays", request_id="req-42")
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_concurrent_retries_with_one_request_id_charge_once(server) -> None:
    token = server.researcher("1")
    script = 'result["n"] = release(dataset().count(), epsilon=0.5)'
    ids: list[str] = []

    def submit() -> None:
        with Client(server.address, token) as client:
            ids.append(client.submit(script, "stays", request_id="same").job_id)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert spent(server, token) == Decimal("0.5")


def test_release_beyond_budget_is_refused_and_earlier_releases_stay(server) -> None:
    token = server.researcher("1")
    script = """
result["a"] = release(dataset().count(), epsilon=0.6)
result["b"] = release(dataset().count(), epsilon=0.6)
"""
    with Client(server.address, token) as client:
        with pytest.raises(JobFailed) as err:
            client.run(script, "stays")
        [budget] = client.budget()
    failure = err.value
    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "requested epsilon=0.6" in failure.message
    assert "remaining epsilon=0.4" in failure.message
    job = failure.job
    assert [r.epsilon for r in job.releases] == [Decimal("0.6")]
    assert job.releases[0].value["value"] > 0  # the paid-for release is still delivered
    assert budget.epsilon_spent == Decimal("0.6")
    assert len(server.app.ledger.entries(job_id=job.job_id)) == 1


@pytest.mark.parametrize(
    ("script", "code", "fragment"),
    [
        ('release(dataset().sum("nope"), epsilon=0.1)', "INVALID_ARGUMENT", "no column 'nope'"),
        ('release(dataset().sum("region"), epsilon=0.1)', "INVALID_ARGUMENT", "not numeric"),
        (
            'release(dataset().group_by("spend").count(), epsilon=0.1)',
            "INVALID_ARGUMENT",
            "not public",
        ),
        (
            'release(dataset().sum("nights", bounds=(0, 100)), epsilon=0.1)',
            "INVALID_ARGUMENT",
            "within",
        ),
        ("release(dataset().count(), epsilon=0)", "INVALID_ARGUMENT", "> 0"),
        ("release(dataset().count(), epsilon=-1)", "INVALID_ARGUMENT", "> 0"),
        ('release(dataset().count(), epsilon=float("nan"))', "INVALID_ARGUMENT", "finite"),
        ('release(dataset().count(), epsilon=float("inf"))', "INVALID_ARGUMENT", "finite"),
        ('release(dataset().count(), epsilon="lots")', "INVALID_ARGUMENT", "number"),
        ("release(dataset().count(), epsilon=5)", "RESOURCE_EXHAUSTED", "remaining epsilon=1"),
        ('release(dataset("nowhere").count(), epsilon=0.1)', "NOT_FOUND", "nowhere"),
        ('release(dataset("other").count(), epsilon=0.1)', "NOT_FOUND", "granted to you"),
        ("release(dataset(), epsilon=0.1)", "INVALID_ARGUMENT", "aggregate plan"),
    ],
)
def test_bad_releases_fail_with_a_specific_error_and_charge_nothing(
    server, other_dataset, script, code, fragment
) -> None:
    token = server.researcher("1")
    with Client(server.address, token) as client:
        with pytest.raises(JobFailed) as err:
            client.run(script, "stays")
        [budget] = client.budget()
    assert err.value.code.name == code
    assert fragment in err.value.message
    assert budget.epsilon_spent == 0
    assert server.app.ledger.entries(job_id=err.value.job.job_id) == []


@pytest.fixture(scope="module")
def other_dataset(server, dataset_files) -> str:
    data, schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("other", data, schema)
    return "other"


def test_submission_checks_dataset_and_grant_without_revealing_names(server, other_dataset) -> None:
    token = server.researcher("1")
    with Client(server.address, token) as client:
        details = []
        for dataset in ("nowhere", "other"):  # absent, and present but not granted
            with pytest.raises(grpc.RpcError) as err:
                client.submit('result["x"] = 1', dataset)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            details.append(err.value.details().replace(dataset, "NAME"))
        assert details[0] == details[1]


@pytest.mark.parametrize(
    "escape",
    [
        "import os",
        "from os import path",
        "x = ().__class__.__bases__[0].__subclasses__()",
        "x = dataset().__class__",
        'x = eval("1 + 1")',
        'exec("y = 1")',
        '__import__("os")',
        'open("/etc/passwd").read()',
        'getattr(dataset, "__globals__")',
        "x = type(1)",
        'x = "{0.__class__}".format(1)',
        "x = globals()",
    ],
)
def test_sandbox_escapes_are_rejected_and_charge_nothing(server, escape) -> None:
    token = server.researcher("1")
    script = f'{escape}\nresult["n"] = release(dataset().count(), epsilon=0.5)'
    with Client(server.address, token) as client:
        try:
            job = client.submit(script, "stays")
        except grpc.RpcError as err:  # rejected at compile time
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        else:  # failed at run time, before its release
            assert job.state == "FAILED"
            assert job.error_code in ("INVALID_ARGUMENT",)
            assert job.releases == ()
        [budget] = client.budget()
    assert budget.epsilon_spent == 0


def test_limits_kill_runaway_jobs_and_the_server_keeps_serving(server) -> None:
    token = server.researcher("1")
    with Client(server.address, token) as client:
        loop = client.submit("while True:\n    pass", "stays")
        assert (loop.state, loop.error_code) == ("FAILED", "RESOURCE_EXHAUSTED")
        assert "CPU" in loop.error_message
        bomb = client.submit("x = [0] * (10 ** 9)", "stays")
        assert (bomb.state, bomb.error_code) == ("FAILED", "RESOURCE_EXHAUSTED")
        assert "memory" in bomb.error_message
        assert client.health() == "SERVING"
        ok = client.run('result["n"] = release(dataset().count(), epsilon=0.1)', "stays")
        assert ok.state == "SUCCEEDED"


@pytest.mark.parametrize(
    "returned",
    [
        "dataset()",
        "dataset().count()",
        'col("age")',
        "count()",
        "dataset().group_by('region')",
        "len",
        "release",
    ],
)
def test_results_hold_only_released_values_and_constants(server, returned) -> None:
    token = server.researcher("1")
    with Client(server.address, token) as client:
        job = client.submit(f'result["x"] = {returned}', "stays")
    assert (job.state, job.error_code) == ("FAILED", "INVALID_ARGUMENT")
    assert job.result is None


def test_watch_streams_states_until_final_and_cancel_stops_a_job(server) -> None:
    token = server.researcher("1")
    with Client(server.address, token) as client:
        job = client.submit("x = 0\nwhile True:\n    x += 1", "stays", wait=False)
        states = []
        watcher = threading.Thread(
            target=lambda: states.extend(j.state for j in client.watch_job(job.job_id))
        )
        watcher.start()
        time.sleep(0.5)
        cancelled = client.cancel_job(job.job_id)
        watcher.join(10)
        assert cancelled.state == "CANCELLED"
        assert states[-1] == "CANCELLED"
        assert client.get_job(job.job_id).state == "CANCELLED"


def test_a_release_too_large_to_hand_back_is_refused_before_the_debit(server, monkeypatch) -> None:
    monkeypatch.setattr("jobs._compiler.MAX_RELEASED_VALUES", 500)  # the server is in-process
    token = server.researcher("1")
    aggs = ", ".join(f'count().alias("c{i}")' for i in range(100))
    script = f'release(dataset().group_by("region", "repeat").agg({aggs}), epsilon=0.1)'
    with Client(server.address, token) as client:
        with pytest.raises(JobFailed) as err:
            client.run(script, "stays")
        [budget] = client.budget()
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "800 values" in err.value.message
    assert budget.epsilon_spent == 0


def test_is_in_negation_and_star_args_work_end_to_end(server, rows) -> None:
    token = server.researcher("1")
    script = """
north_east = release(dataset().filter(col("region").is_in(["north", "east"])).count(), epsilon=0.3)
short = release(dataset().filter(-col("nights") > -3).count(), epsilon=0.3)
aggs = [count(), mean("spend")]
both = release(dataset().agg(*aggs), epsilon=0.3)
result["north_east"] = north_east
result["short"] = short
result["both"] = both
"""
    with Client(server.address, token) as client:
        job = client.run(script, "stays")
    r = job.result
    assert within_noise(r["north_east"], sum(1 for x in rows if x["region"] in ("north", "east")))
    assert within_noise(r["short"], sum(1 for x in rows if x["nights"] < 3))
    assert set(r["both"]) == {"count", "mean_spend"}


def test_post_processing_and_print(server) -> None:
    token = server.researcher("1")
    script = """
a = release(dataset().filter(col("repeat")).count(), epsilon=0.2)
b = release(dataset().filter(~col("repeat")).count(), epsilon=0.2)
total = sum([a, b])
print("total", total)
result["share_repeat"] = a.value / total
result["both"] = [a, b]
"""
    with Client(server.address, token) as client:
        job = client.run(script, "stays")
    assert 0.2 < job.result["share_repeat"] < 0.4
    assert job.printed.startswith("total ")
    assert all("ci95" in v for v in job.result["both"])


def test_overlong_request_id_is_invalid(server) -> None:
    token = server.researcher("1")
    with Client(server.address, token) as client, pytest.raises(grpc.RpcError) as err:
        client.submit('result["x"] = 1', "stays", request_id="r" * 201)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_parquet_registration(server, rows, dataset_files, tmp_path) -> None:
    import polars as pl

    _csv, schema = dataset_files
    path = tmp_path / "stays.parquet"
    pl.DataFrame(rows).write_parquet(path)
    with Client(server.address, server.provider_token) as provider:
        info = provider.register_dataset("stays_parquet", path, schema)
        assert [c.name for c in info.columns] == ["region", "nights", "spend", "age", "repeat"]
        token = server.researcher(None, name="parquet_user")
        provider.grant("stays_parquet", "parquet_user", 1)
    with Client(server.address, token) as client:
        job = client.run('result["n"] = release(dataset().count(), epsilon=0.5)', "stays_parquet")
    assert within_noise(job.result["n"], len(rows))


def test_spreads_and_histograms_end_to_end(server, rows) -> None:
    import statistics

    token = server.researcher("2")
    script = """
spread = release(dataset().agg(variance("spend"), std("nights")), epsilon=1)
result["spread"] = spread
result["nights"] = release(dataset().histogram("nights", bins=[3, 7, 10]), epsilon=0.5)
result["regions"] = release(dataset().filter(col("age") >= 40).histogram("region"), epsilon=0.5)
"""
    with Client(server.address, token) as client:
        job = client.run(script, "stays")
    r = job.result
    true_var = statistics.variance([x["spend"] for x in rows])
    lo, hi = r["spread"]["variance_spend"]["ci95"]
    assert lo - 2000 <= true_var <= hi + 2000  # the interval is 95%; this slack makes it sure
    assert 0 <= r["spread"]["std_nights"]["value"] <= 6.5
    assert [b["nights"] for b in r["nights"]] == ["< 3", "[3, 7)", "[7, 10)", ">= 10"]
    assert within_noise(r["nights"][0]["count"], sum(1 for x in rows if x["nights"] < 3))
    assert [b["region"] for b in r["regions"]] == ["north", "south", "east", "west"]
    assert job.cost_epsilon == 2
