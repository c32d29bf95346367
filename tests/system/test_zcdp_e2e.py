"""zCDP datasets end to end: ρ grants, Gaussian releases, ρ debits and their (ε, δ)
equivalents, over a real gRPC server, a real SQLite ledger and the real CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from decimal import Decimal

import grpc
import pytest
from conftest import SCHEMA_TOML

from enclave import Client, JobFailed
from jobs import zcdp_epsilon

ZCDP = "zstays"
EQUIVALENT_DELTA = 1e-7
# Top-level keys must come before the first [table] of the TOML.
ZCDP_SCHEMA = (
    f'privacy_definition = "zcdp"\nequivalent_delta = {EQUIVALENT_DELTA!r}\n' + SCHEMA_TOML
)
# A Gaussian draw exceeds k standard deviations with probability <= 2 exp(-k²/2):
# below 1e-9 per released value at k = 7.
TAIL = 7.0


@pytest.fixture(scope="module")
def zcdp(server, dataset_files) -> str:
    """The test rows registered a second time, as a zCDP dataset."""
    data, _schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset(ZCDP, data, ZCDP_SCHEMA)
    return ZCDP


def zcdp_researcher(server, name: str, rho: str, delta: str | None = None) -> str:
    """A fresh researcher granted ``rho`` (and ``delta``) on the zCDP dataset only."""
    token = server.researcher(None, name=name)
    with Client(server.address, server.provider_token) as provider:
        provider.grant(ZCDP, name, rho=rho, delta=delta)
    return token


def eq_epsilon(rho: str | Decimal) -> float:
    return zcdp_epsilon(Decimal(rho), EQUIVALENT_DELTA)


def ledger_rho(server, principal: str) -> list[Decimal]:
    return [e.rho for e in server.app.ledger.entries() if e.principal == principal]


# --- 1. registration and description ------------------------------------------------


def test_zcdp_dataset_describes_its_definition_and_equivalent_delta(server, zcdp) -> None:
    granted = zcdp_researcher(server, "describer", "0.5")
    pure_only = server.researcher("1", name="describer_pure")
    with Client(server.address, server.provider_token) as provider:
        info = provider.describe_dataset(zcdp)
        pure = provider.describe_dataset("stays")
    assert info.privacy_definition == "zcdp"
    assert info.equivalent_delta == EQUIVALENT_DELTA
    assert [c.name for c in info.columns] == ["region", "nights", "spend", "age", "repeat"]
    assert pure.privacy_definition == "pure_dp"
    assert pure.equivalent_delta == 0.0
    # The granted researcher sees the same public metadata, also when listing,
    # and their own budget (in rho) beside it.
    with Client(server.address, granted) as client:
        seen = client.describe_dataset(zcdp)
        assert Decimal(seen.budget.rho_cap) == Decimal("0.5")
        seen.ClearField("budget")
        assert [v.version for v in info.versions] == [1]  # the history: provider and DPOs only
        assert not seen.versions
        info.ClearField("versions")
        assert seen == info
        assert [d.privacy_definition for d in client.datasets()] == ["zcdp"]
    # Others do not see it at all.
    with Client(server.address, pure_only) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.describe_dataset(zcdp)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_zcdp_schema_defaults_and_refusals(server, dataset_files) -> None:
    data, _schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        info = provider.register_dataset(
            "zstays_default", data, 'privacy_definition = "zcdp"\n' + SCHEMA_TOML
        )
        assert info.privacy_definition == "zcdp"
        assert info.equivalent_delta == 1e-6  # the documented default
        for name, schema, fragment in [
            ("bad_def", 'privacy_definition = "rdp"\n' + SCHEMA_TOML, "privacy_definition"),
            ("bad_pure", "equivalent_delta = 1e-7\n" + SCHEMA_TOML, "equivalent_delta"),
            (
                "bad_delta",
                'privacy_definition = "zcdp"\nequivalent_delta = 1.5\n' + SCHEMA_TOML,
                "equivalent_delta",
            ),
            # After the last [table] the key belongs to the column, not the dataset:
            # refused, never silently read as a pure-DP dataset.
            ("bad_place", SCHEMA_TOML + 'privacy_definition = "zcdp"\n', "privacy_definition"),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                provider.register_dataset(name, data, schema)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert fragment in err.value.details(), (name, err.value.details())
        assert {d.name for d in provider.datasets()}.isdisjoint(
            {"bad_def", "bad_pure", "bad_delta", "bad_place"}
        )


# --- 2. grants ----------------------------------------------------------------------


def test_grants_are_in_the_datasets_measure(server, zcdp) -> None:
    token = server.researcher(None, name="granted")
    with Client(server.address, server.provider_token) as provider:
        grant = provider.grant(zcdp, "granted", rho="0.5", delta="1e-6")
        assert (grant.rho_cap, grant.epsilon_cap, grant.delta_cap) == ("0.5", "0", "0.000001")

        refusals = [
            ({"epsilon": "1"}, "rho"),
            ({"epsilon": "1", "rho": "0.5"}, "rho"),
            ({}, "rho"),
            ({"rho": "0"}, "rho"),
            ({"rho": "-1"}, "rho"),
        ]
        for kwargs, fragment in refusals:
            with pytest.raises(grpc.RpcError) as err:
                provider.grant(zcdp, "granted", **kwargs)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, kwargs
            assert fragment in err.value.details(), kwargs
        # A refused epsilon grant on a zCDP dataset creates no grant at all.
        server.researcher(None, name="granted_eps")
        with pytest.raises(grpc.RpcError) as err:
            provider.grant(zcdp, "granted_eps", 1)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "rho" in err.value.details()
        assert not server.app.ledger.has_grant("granted_eps", zcdp)
        # ... and rho on a pure-DP dataset is refused the other way round.
        for kwargs in ({"rho": "0.5"}, {"rho": "0.5", "epsilon": "1"}):
            with pytest.raises(grpc.RpcError) as err:
                provider.grant("stays", "granted", **kwargs)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "epsilon" in err.value.details()
        assert not server.app.ledger.has_grant("granted", "stays")

    with Client(server.address, token) as client:
        [budget] = client.budget()
    # The refusals left the first grant as it was.
    assert budget.dataset == zcdp
    assert budget.privacy_definition == "zcdp"
    assert (budget.rho_cap, budget.rho_spent, budget.rho_remaining) == (
        Decimal("0.5"),
        0,
        Decimal("0.5"),
    )
    assert (budget.epsilon_cap, budget.epsilon_spent, budget.epsilon_remaining) == (0, 0, 0)
    assert budget.delta_cap == budget.delta_remaining == Decimal("0.000001")
    assert float(budget.epsilon_equivalent_remaining) == pytest.approx(eq_epsilon("0.5"), abs=1e-9)
    # δ remaining as (ε, δ): the δ cap plus the conversion's δ.
    assert budget.delta_equivalent_remaining == Decimal("0.000001") + Decimal(
        repr(EQUIVALENT_DELTA)
    )


# --- 3. a job releasing under zCDP ----------------------------------------------------


def test_rho_job_releases_gaussian_count_and_mean_and_debits_rho(server, zcdp, rows) -> None:
    token = zcdp_researcher(server, "gauss", "0.5")
    script = """
stays = dataset()
result["n"] = release(stays.count(), rho=0.05)
result["spend"] = release(stays.mean("spend"), rho=0.05)
"""
    with Client(server.address, token) as client:
        job = client.run(script, zcdp)
        fetched = client.get_job(job.job_id)
        [budget] = client.budget(zcdp)

    # Values: Gaussian noise calibrated to ρ (count: sensitivity 1, ρ = 1 / (2 scale²)).
    n, spend = job.result["n"], job.result["spend"]
    assert n["noise_scale"] == pytest.approx(1 / math.sqrt(2 * 0.05), rel=1e-6)
    assert abs(n["value"] - len(rows)) <= TAIL * n["noise_scale"]
    assert "Gaussian" in n["mechanism"]
    true_mean = sum(r["spend"] for r in rows) / len(rows)
    assert abs(spend["value"] - true_mean) < 5  # sum noise scale ≈ 2236 over ~4000 rows
    for value in (n, spend):
        lo, hi = value["ci95"]
        assert lo <= value["value"] <= hi
    for release in job.releases:
        assert "Gaussian" in release.mechanism and "Laplace" not in release.mechanism

    # Costs: ρ exactly, no ε, and the (ε, δ) equivalent by OpenDP's conversion.
    assert job.cost.rho == job.cost_rho == Decimal("0.1")
    assert job.cost.epsilon == job.cost_epsilon == 0
    assert job.cost.delta == 0
    assert job.cost.epsilon_equivalent > 0
    assert float(job.cost.epsilon_equivalent) == pytest.approx(eq_epsilon("0.1"), abs=1e-9)
    assert float(job.cost.delta_equivalent) == EQUIVALENT_DELTA
    assert [(r.rho, r.epsilon, r.delta) for r in job.releases] == [(Decimal("0.05"), 0, 0)] * 2
    for release in job.releases:
        assert float(release.cost.epsilon_equivalent) == pytest.approx(eq_epsilon("0.05"), abs=1e-9)
    # ρ composes by addition and is converted once: tighter than adding each
    # release's own (ε, δ).
    assert job.cost.epsilon_equivalent < sum(r.cost.epsilon_equivalent for r in job.releases)
    assert fetched.cost == job.cost and fetched.releases == job.releases

    # Budget and ledger.
    assert budget.rho_spent == Decimal("0.1")
    assert budget.rho_remaining == Decimal("0.4") == budget.rho_cap - Decimal("0.1")
    assert budget.epsilon_spent == budget.epsilon_remaining == 0
    assert float(budget.epsilon_equivalent_remaining) == pytest.approx(
        eq_epsilon(budget.rho_remaining), abs=1e-9
    )
    assert float(budget.delta_equivalent_remaining) == EQUIVALENT_DELTA
    entries = server.app.ledger.entries(job_id=job.job_id)
    assert [(e.dataset, e.rho, e.epsilon, e.delta) for e in entries] == [
        (zcdp, Decimal("0.05"), 0, 0)
    ] * 2
    server.app.ledger.verify()


# --- 4. the wrong measure ------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "amount", "fragment"),
    [
        (ZCDP, "epsilon=0.1", "rho"),
        ("stays", "rho=0.1", "epsilon"),
        (ZCDP, "epsilon=0.1, rho=0.1", "not both"),
        (ZCDP, "rho=0", "> 0"),
        (ZCDP, 'rho=float("nan")', "finite"),
    ],
)
def test_wrong_measure_fails_the_job_and_charges_nothing(
    server, zcdp, dataset, amount, fragment
) -> None:
    name = f"wrong_{next(server._counter)}"
    if dataset == ZCDP:
        token = zcdp_researcher(server, name, "1")
    else:
        token = server.researcher("1", name=name)
    script = f'result["n"] = release(dataset().count(), {amount})'
    with Client(server.address, token) as client:
        with pytest.raises(JobFailed) as err:
            client.run(script, dataset)
        # A preview refuses it the same way, synchronously.
        with pytest.raises(grpc.RpcError) as preview:
            client.estimate(script, dataset)
        [budget] = client.budget(dataset)
    failure = err.value
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT  # PlanError's code
    assert failure.job.state == "FAILED"
    assert failure.job.error_code == "INVALID_ARGUMENT"
    assert fragment in failure.message
    assert preview.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in preview.value.details()
    assert failure.job.releases == ()
    assert failure.job.cost.rho == failure.job.cost.epsilon == 0
    assert budget.rho_spent == budget.epsilon_spent == 0
    assert server.app.ledger.entries(job_id=failure.job.job_id) == []


# --- 5. cost preview -----------------------------------------------------------------

TWO_RELEASES = (
    'a = release(dataset().filter(col("age") > 40).count(), rho=0.1)\n'
    'b = release(dataset().agg(mean("nights"), sum("spend")), rho=0.05)\n'
    'result["share"] = a.value / 4000\n'
    'result["b"] = b'
)


def test_estimate_of_a_rho_script_equals_its_charge(server, zcdp) -> None:
    token = zcdp_researcher(server, "estimator", "0.25")
    with Client(server.address, token) as client:
        estimate = client.estimate(TWO_RELEASES, zcdp)
        [before] = client.budget()
        assert before.rho_spent == 0  # the preview spends nothing
        assert estimate.fits_budget
        assert [b.rho_remaining for b in estimate.budgets] == [Decimal("0.25")]
        job = client.run(TWO_RELEASES, zcdp)

        # Per release and in total, exactly what the submission charged.
        assert estimate.rho == job.cost.rho == Decimal("0.15")
        assert estimate.cost == job.cost
        assert [
            (r.index, r.dataset, r.rho, r.epsilon, r.mechanism, r.cost) for r in estimate.releases
        ] == [(r.index, r.dataset, r.rho, r.epsilon, r.mechanism, r.cost) for r in job.releases]
        assert [r.rho for r in job.releases] == [Decimal("0.1"), Decimal("0.05")]
        charged = [e.rho for e in server.app.ledger.entries(job_id=job.job_id)]
        assert charged == [Decimal("0.1"), Decimal("0.05")]

        # 0.1 remains: the same 0.15 no longer fits, a 0.1 script fits exactly.
        again = client.estimate(TWO_RELEASES, zcdp)
        assert not again.fits_budget
        assert again.rho == Decimal("0.15")
        assert [b.rho_remaining for b in again.budgets] == [Decimal("0.1")]
        exact = client.estimate('result["n"] = release(dataset().count(), rho=0.1)', zcdp)
        assert exact.fits_budget
        [after] = client.budget()
    assert after.rho_spent == Decimal("0.15")


def test_one_job_spends_epsilon_and_rho_on_two_datasets(server, zcdp) -> None:
    token = server.researcher("1", name="mixed")
    with Client(server.address, server.provider_token) as provider:
        provider.grant(zcdp, "mixed", rho="0.3")
    script = (
        'result["a"] = release(dataset("stays").count(), epsilon=0.2)\n'
        f'result["b"] = release(dataset("{zcdp}").count(), rho=0.1)'
    )
    with Client(server.address, token) as client:
        estimate = client.estimate(script, "stays")
        job = client.run(script, "stays")
        budgets = {b.dataset: b for b in client.budget()}
    assert estimate.cost == job.cost and estimate.fits_budget
    assert [b.dataset for b in estimate.budgets] == ["stays", zcdp]
    assert (job.cost.epsilon, job.cost.rho) == (Decimal("0.2"), Decimal("0.1"))
    assert [(r.dataset, r.epsilon, r.rho) for r in job.releases] == [
        ("stays", Decimal("0.2"), 0),
        (zcdp, 0, Decimal("0.1")),
    ]
    assert "Laplace" in job.releases[0].mechanism and "Gaussian" in job.releases[1].mechanism
    # The datasets' (ε, δ) add up: ε as spent, plus ρ converted at zstays' δ.
    assert float(job.cost.epsilon_equivalent) == pytest.approx(0.2 + eq_epsilon("0.1"), abs=1e-9)
    assert float(job.cost.delta_equivalent) == EQUIVALENT_DELTA
    # Each dataset is debited in its own measure.
    assert (budgets["stays"].epsilon_spent, budgets["stays"].rho_spent) == (Decimal("0.2"), 0)
    assert (budgets[zcdp].epsilon_spent, budgets[zcdp].rho_spent) == (0, Decimal("0.1"))
    assert budgets["stays"].privacy_definition == "pure_dp"
    assert budgets["stays"].epsilon_equivalent_remaining == Decimal("0.8")


def test_text_of_a_cost_in_both_measures_shows_both() -> None:
    from enclave._client import Cost

    cost = Cost(
        epsilon=Decimal("0.2"),
        rho=Decimal("0.1"),
        epsilon_equivalent=Decimal("2.548"),
        delta_equivalent=Decimal("1e-7"),
    )
    assert "epsilon=0.2" in str(cost) and "rho=0.1" in str(cost)


# --- 6. exhaustion -------------------------------------------------------------------


def test_rho_budget_allows_exactly_n_releases(server, zcdp) -> None:
    # 0.1 + 0.1 + 0.1 > 0.3 in binary floating point; the ledger's sum is exact.
    token = zcdp_researcher(server, "exhaust", "0.3")
    script = 'result["n"] = release(dataset().count(), rho=0.1)'
    with Client(server.address, token) as client:
        done = [client.run(script, zcdp) for _ in range(3)]
        with pytest.raises(JobFailed) as err:
            client.run(script, zcdp)
        [budget] = client.budget()
    assert all(j.cost.rho == Decimal("0.1") for j in done)
    failure = err.value
    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "requested rho=0.1" in failure.message
    assert "remaining rho=0" in failure.message
    assert "epsilon" not in failure.message
    assert failure.job.releases == ()
    assert server.app.ledger.entries(job_id=failure.job.job_id) == []
    assert budget.rho_spent == budget.rho_cap == Decimal("0.3")
    assert budget.rho_remaining == 0
    assert budget.epsilon_equivalent_remaining == 0
    assert budget.delta_equivalent_remaining == 0
    assert sum(ledger_rho(server, "exhaust"), Decimal(0)) == Decimal("0.3")
    server.app.ledger.verify()


def test_concurrent_rho_releases_never_overspend(server, zcdp) -> None:
    token = zcdp_researcher(server, "racer", "0.4")
    script = 'result["n"] = release(dataset().count(), rho=0.1)'
    with Client(server.address, token) as client:
        queued = [client.submit(script, zcdp, wait=False) for _ in range(6)]
        final = []
        for job in queued:
            for update in client.watch_job(job.job_id):
                job = update
            final.append(job)
        [budget] = client.budget()
    states = sorted(j.state for j in final)
    assert states == ["FAILED"] * 2 + ["SUCCEEDED"] * 4
    assert {j.error_code for j in final if j.state == "FAILED"} == {"RESOURCE_EXHAUSTED"}
    assert budget.rho_spent == Decimal("0.4") and budget.rho_remaining == 0
    assert ledger_rho(server, "racer") == [Decimal("0.1")] * 4
    server.app.ledger.verify()


# --- 7. the CLI ----------------------------------------------------------------------


def cli(server, token: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env |= {"ENCLAVE_TOKEN": token, "ENCLAVE_ADDRESS": server.address}
    done = subprocess.run(
        [sys.executable, "-m", "enclave", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"enclave {args} failed: {done.stdout}{done.stderr}")
    return done


def test_cli_grants_submits_and_shows_rho(server, zcdp, tmp_path) -> None:
    token = server.researcher(None, name="cli_z")
    provider = server.provider_token
    granted = cli(server, provider, "dataset", "grant", zcdp, "--to", "cli_z", "--rho", "0.5")
    assert "rho cap 0.5" in granted.stdout
    refused = cli(
        server, provider, "dataset", "grant", zcdp, "--to", "cli_z", "--epsilon", "1", check=False
    )
    assert refused.returncode == 1
    assert "INVALID_ARGUMENT" in refused.stderr and "rho" in refused.stderr

    described = cli(server, token, "dataset", "describe", zcdp).stdout
    assert "zCDP" in described and "delta=1e-07" in described
    as_json = json.loads(cli(server, token, "dataset", "describe", zcdp, "--json").stdout)
    assert as_json["privacy_definition"] == "zcdp"
    assert as_json["equivalent_delta"] == EQUIVALENT_DELTA

    script = tmp_path / "job.py"
    script.write_text('result["n"] = release(dataset().count(), rho=0.1)\n')
    preview = json.loads(
        cli(server, token, "submit", str(script), "--dataset", zcdp, "--dry-run", "--json").stdout
    )
    assert preview["cost"]["rho"] == "0.1" and preview["fits_budget"] is True
    job = json.loads(cli(server, token, "submit", str(script), "--dataset", zcdp, "--json").stdout)
    assert job["status"] == "SUCCEEDED"
    assert job["cost"]["rho"] == "0.1"
    assert job["cost"]["epsilon"] == "0" and job["cost"]["delta"] == "0"
    assert float(job["cost"]["epsilon_equivalent"]) == pytest.approx(eq_epsilon("0.1"), abs=1e-9)
    assert float(job["cost"]["delta_equivalent"]) == EQUIVALENT_DELTA
    assert [r["rho"] for r in job["releases"]] == ["0.1"]

    with Client(server.address, token) as client:
        [budget] = client.budget()
    table = cli(server, token, "budget").stdout
    [row] = [line for line in table.splitlines() if line.startswith(zcdp)]
    eq = f"{float(budget.epsilon_equivalent_remaining):.4g}"
    assert row.split()[:5] == [zcdp, "rho", "0.5", "0.1", "0.4"]
    assert f"(epsilon {eq} at delta {budget.delta_equivalent_remaining:f})" in row
    assert float(eq) == pytest.approx(eq_epsilon("0.4"), rel=1e-3)
    listed = json.loads(cli(server, token, "budget", "--json").stdout)
    assert listed[0]["rho_spent"] == "0.1" and listed[0]["privacy_definition"] == "zcdp"

    wrong = tmp_path / "wrong.py"
    wrong.write_text('result["n"] = release(dataset().count(), epsilon=0.1)\n')
    failed = cli(server, token, "submit", str(wrong), "--dataset", zcdp, check=False)
    assert failed.returncode == 1
    assert "INVALID_ARGUMENT" in failed.stdout and "rho=" in failed.stdout
    human = cli(server, token, "submit", str(script), "--dataset", zcdp).stdout
    assert f"rho=0.1 (as (epsilon={eq_epsilon('0.1'):.4g}" in human
