"""Cost preview: EstimateCost prices every release exactly as a submission charges it."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import grpc
import pytest

from enclave import Client

SCRIPTS = {
    "count": 'result["x"] = release(dataset().count(), epsilon=0.3)',
    "int sum": 'result["x"] = release(dataset().sum("nights"), epsilon=0.2)',
    "float sum": 'result["x"] = release(dataset().sum("spend", bounds=(0, 100)), epsilon=0.25)',
    "mean": 'result["x"] = release(dataset().mean("spend"), epsilon=0.15)',
    "bool sum": 'result["x"] = release(dataset().sum("repeat"), epsilon=0.1)',
    "record": 'result["x"] = release(dataset().agg(count(), mean("age"), sum("nights")), epsilon=0.35)',
    "grouped": (
        'rows = release(dataset().filter(col("age") > 30).group_by("region", "repeat")'
        '.agg(count(), mean("nights")), epsilon=0.4)\n'
        'result["share"] = rows[0]["count"].value / sum([r["count"] for r in rows])'
    ),
    "variance": 'result["x"] = release(dataset().agg(variance("spend"), std("age")), epsilon=0.3)',
    "histogram": 'result["x"] = release(dataset().histogram("nights", bins=[2, 5, 9]), epsilon=0.2)',
    "category histogram": 'result["x"] = release(dataset().histogram("region"), epsilon=0.2)',
    "derived": (
        'd = dataset().with_columns(per=col("spend") / col("nights"), long=col("nights") >= 7)\n'
        'result["x"] = release(d.filter(col("long")).agg(mean("per"), count()), epsilon=0.3)'
    ),
    "quantiles": (
        'result["x"] = release(dataset().agg(median("age"), quantile("spend", [0.1, 0.9]), '
        "count()), epsilon=0.4)"
    ),
    "when and select": (
        'd = dataset().select("spend", "region", band=when(col("age") < 40).then(1).otherwise(2))\n'
        'result["x"] = release(d.group_by("region").agg(mean("band"), sum("spend")), epsilon=0.3)'
    ),
    "several": (
        "a = release(dataset().count(), epsilon=0.1)\n"
        'b = release(dataset().filter(col("region").is_in(["north"])).count(), epsilon=1/3)\n'
        'result["ratio"] = b.value / a.value'
    ),
}


@pytest.mark.parametrize("dataset", ["stays", "people"])
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_estimate_equals_charge(server, people, dataset, name) -> None:
    script = SCRIPTS[name]
    user = f"est_{dataset}_{name.replace(' ', '_')}"
    token = server.researcher(None, name=user)
    with Client(server.address, server.provider_token) as provider:
        provider.grant(dataset, user, 5)
    with Client(server.address, token) as client:
        estimate = client.estimate(script, dataset)
        # The preview spends nothing.
        [before] = client.budget()
        assert before.epsilon_spent == 0
        assert estimate.fits_budget
        job = client.run(script, dataset)
    assert estimate.epsilon == job.cost_epsilon
    assert [(r.index, r.dataset, r.epsilon, r.mechanism) for r in estimate.releases] == [
        (r.index, r.dataset, r.epsilon, r.mechanism) for r in job.releases
    ]
    charged = sum((e.epsilon for e in server.app.ledger.entries(job_id=job.job_id)), Decimal(0))
    assert charged == estimate.epsilon


def test_estimate_reports_a_script_that_does_not_fit(server) -> None:
    token = server.researcher("0.5")
    script = (
        "a = release(dataset().count(), epsilon=0.3)\nb = release(dataset().count(), epsilon=0.3)"
    )
    with Client(server.address, token) as client:
        estimate = client.estimate(script, "stays")
        assert estimate.epsilon == Decimal("0.6")
        assert not estimate.fits_budget
        assert estimate.budgets[0].epsilon_remaining == Decimal("0.5")
        [budget] = client.budget()
    assert budget.epsilon_spent == 0


def test_estimate_fails_like_a_submission_on_bad_plans(server) -> None:
    token = server.researcher("1")
    with Client(server.address, token) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.estimate('release(dataset().sum("nope"), epsilon=0.1)', "stays")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "no column 'nope'" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            client.estimate("import os", "stays")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_dry_run_from_the_cli(server, tmp_path) -> None:
    token = server.researcher("1")
    script = tmp_path / "job.py"
    script.write_text(SCRIPTS["record"])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "enclave",
            "--address",
            server.address,
            "--token",
            token,
            "submit",
            str(script),
            "--dataset",
            "stays",
            "--dry-run",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["dry_run"] is True
    assert out["cost"] == {"epsilon": "0.35", "delta": "0"}
    assert out["fits_budget"] is True
    with Client(server.address, token) as client:
        assert client.list_jobs() == []


def worker_count() -> int:
    import os

    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    count += b"jobs._sandbox._worker" in fh.read()
            except OSError:
                pass
    return count


def test_a_preview_stops_when_its_call_ends(server) -> None:
    import time

    token = server.researcher("1")
    before = worker_count()
    with Client(server.address, token, timeout=1.0) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.estimate("while True:\n    pass", "stays")
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 1.5  # well before the 3 s CPU limit would end it
    while worker_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker_count() <= before
