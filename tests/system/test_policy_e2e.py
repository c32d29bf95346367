"""A provider's policy over gRPC and the CLI: per-release maximum, a dataset-wide cap
over all researchers, versions kept with who set them, visibility by role."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from enclave import Client

POLICY = "per_release_max_epsilon = 0.3\ndataset_cap_epsilon = 1\n"


def _cli(server, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env |= {"ENCLAVE_TOKEN": token, "ENCLAVE_ADDRESS": server.address}
    return subprocess.run(
        [sys.executable, "-m", "enclave", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def guarded(server, dataset_files) -> str:
    data, schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("guarded", data, schema)
    return "guarded"


def _researcher(server, name: str, dataset: str) -> str:
    token = server.researcher(None, name=name)
    with Client(server.address, server.provider_token) as provider:
        provider.grant(dataset, name, 1)
    return token


def test_policy_limits_releases_and_all_researchers_together(
    server, guarded, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY)
    done = _cli(server, server.provider_token, "policy", "set", guarded, "--file", str(policy_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "policy version 1, set by provider" in done.stdout
    assert "per_release_max_epsilon = 0.3" in done.stdout

    alice = _researcher(server, "policy_alice", guarded)
    bob = _researcher(server, "policy_bob", guarded)
    with Client(server.address, alice) as client:
        too_big = client.submit('result["n"] = release(dataset().count(), epsilon=0.5)', guarded)
        assert (too_big.state, too_big.error_code) == ("FAILED", "FAILED_PRECONDITION")
        assert "at most epsilon=0.3 per release" in too_big.error_message
        with pytest.raises(grpc.RpcError, match=r"at most epsilon=0\.3"):
            client.estimate('result["n"] = release(dataset().count(), epsilon=0.5)', guarded)
        for _ in range(3):
            job = client.submit('result["n"] = release(dataset().count(), epsilon=0.3)', guarded)
            assert job.state == "SUCCEEDED"
        [mine] = client.budget(guarded)
        assert mine.epsilon_spent == Decimal("0.9")
        seen = client.policy(guarded)
        assert [v.version for v in seen.versions] == [1]
        assert not seen.HasField("dataset_spent")  # others' spending is not hers to see
    with Client(server.address, bob) as client:
        assert client.submit(
            'result["n"] = release(dataset().count(), epsilon=0.1)', guarded
        ).state == ("SUCCEEDED")
        capped = client.submit('result["n"] = release(dataset().count(), epsilon=0.1)', guarded)
        assert capped.error_code == "RESOURCE_EXHAUSTED"
        assert "dataset-wide cap" in capped.error_message
        [his] = client.budget(guarded)
        assert his.epsilon_spent == Decimal("0.1")  # the refused release charged nothing

    shown = _cli(server, server.provider_token, "policy", "show", guarded)
    assert "spent by all researchers: epsilon=1, rho=0, delta=0" in shown.stdout
    policy_file.write_text("dataset_cap_epsilon = 2\n")
    _cli(server, server.provider_token, "policy", "set", guarded, "--file", str(policy_file))
    history = _cli(server, server.dpo_token, "policy", "show", guarded, "--history")
    assert history.returncode == 0
    assert history.stdout.index("version 2") < history.stdout.index("version 1")
    with Client(server.address, bob) as client:  # raised cap, no per-release maximum now
        assert client.submit(
            'result["n"] = release(dataset().count(), epsilon=0.5)', guarded
        ).state == ("SUCCEEDED")


def test_policies_are_the_owners_and_in_the_datasets_measure(server, guarded) -> None:
    stranger = server.researcher(None, name="policy_stranger")
    with (
        Client(server.address, stranger) as client,
        pytest.raises(grpc.RpcError, match="NOT_FOUND"),
    ):
        client.policy(guarded)
    with Client(server.address, server.admin_token) as admin:
        other = admin.create_principal("other_provider", "provider")
    with Client(server.address, other) as client, pytest.raises(grpc.RpcError, match="NOT_FOUND"):
        client.set_policy(guarded, POLICY)
    with Client(server.address, server.provider_token) as provider:
        for bad, fragment in (
            ("per_release_max_rho = 0.1", "accounts privacy in epsilon"),
            ("dataset_cap = 1", "unknown policy key"),
            ("per_release_max_epsilon = -1", "must be > 0"),
        ):
            with pytest.raises(grpc.RpcError, match=fragment):
                provider.set_policy(guarded, bad)


def test_grants_expire_and_can_be_revoked(server, guarded) -> None:
    import datetime as dt
    import time

    name = "expiring_carol"
    token = server.researcher(None, name=name)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    with Client(server.address, server.provider_token) as provider:
        with pytest.raises(grpc.RpcError, match="already past"):
            provider.grant(guarded, name, 1, expires_at=soon - dt.timedelta(hours=1))
        granted = provider.grant(guarded, name, 1, expires_at=soon)
        assert granted.HasField("expires_at")
    script = 'result["n"] = release(dataset().count(), epsilon=0.1)'
    with Client(server.address, token) as client:
        [budget] = client.budget(guarded)
        assert budget.expires_at is not None
        assert abs((budget.expires_at - soon).total_seconds()) < 1
        assert client.submit(script, guarded).state == "SUCCEEDED"
        time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 0.5)
        # Refused at submission: the dataset is no longer one of hers.
        with pytest.raises(grpc.RpcError, match="granted to you"):
            client.submit(script, guarded)
        assert guarded not in [d.name for d in client.datasets()]
    # A re-grant without an expiry lasts; a revocation (here through the CLI) ends it.
    with Client(server.address, server.provider_token) as provider:
        provider.grant(guarded, name, 1)
    with Client(server.address, token) as client:
        assert client.submit(script, guarded).state == "SUCCEEDED"
    done = _cli(server, server.provider_token, "dataset", "revoke", guarded, "--from", name)
    assert done.returncode == 0, done.stdout + done.stderr
    with Client(server.address, token) as client, pytest.raises(grpc.RpcError, match="granted"):
        client.submit(script, guarded)
    again = _cli(server, server.provider_token, "dataset", "revoke", guarded, "--from", name)
    assert again.returncode != 0
    assert "no grant" in again.stdout + again.stderr


def test_cells_below_the_minimum_count_are_suppressed(server, dataset_files) -> None:
    """Post-processing only: the release is charged as usual, small cells have no value."""
    data, schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("small_cells", data, schema)
        provider.set_policy("small_cells", "min_count = 300\n")
    token = _researcher(server, "cells_dan", "small_cells")
    # Regions of the test data hold 1,000 to 2,000 rows; people aged 85+ under 200.
    script = (
        'rows = release(dataset().filter(col("age") >= 85).group_by("region")'
        '.agg(count(), mean("nights")), epsilon=0.5)\n'
        'big = release(dataset().group_by("region").agg(count()), epsilon=0.2)\n'
        'result["old"] = rows\n'
        'result["all"] = big\n'
        'result["suppressed"] = [r["region"] for r in rows if r["count"].value is None]'
    )
    with Client(server.address, token) as client:
        job = client.submit(script, "small_cells")
        assert job.state == "SUCCEEDED", job.error_message
        assert job.cost_epsilon == Decimal("0.7")  # suppression costs nothing, saves nothing
        old = job.result["old"]
        assert [r["count"]["suppressed"] for r in old] == [300] * 4
        assert all(r["mean_nights"]["value"] is None for r in old)
        assert job.result["suppressed"] == [r["region"] for r in old]
        # "west" is declared but absent from the data: its noisy zero is suppressed too.
        counts = {r["region"]: r["count"] for r in job.result["all"]}
        assert counts["west"]["value"] is None
        assert all(counts[k]["value"] >= 300 for k in ("north", "south", "east"))
        no_count = client.submit(
            'result["x"] = release(dataset().group_by("region").agg(mean("nights")), epsilon=0.1)',
            "small_cells",
        )
        assert no_count.error_code == "INVALID_ARGUMENT"
        assert "include count()" in no_count.error_message
        assert client.budget("small_cells")[0].epsilon_spent == Decimal("0.7")


NARROW_POLICY = """
allowed_columns = ["region", "nights", "spend"]

[bounds]
spend = [0, 100]
"""


def test_allowed_columns_and_narrower_bounds_shape_what_researchers_see(
    server, dataset_files, rows
) -> None:
    """Hidden columns are absent from the catalog and from plans; narrowed ones are clamped."""
    data, schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("narrowed", data, schema)
        provider.set_policy("narrowed", NARROW_POLICY)
        for bad, fragment in (
            ('allowed_columns = ["region", "income"]', "has no column.*'income'"),
            ("[bounds]\nspend = [0, 900]", r"not inside its declared bounds \[0.0, 500.0\]"),
            ("[bounds]\nregion = [0, 1]", "bounds apply only to int and float"),
            ("[bounds]\nnights = [1, 2.5]", "whole numbers"),
            ("allowed_columns = []", "non-empty list"),
        ):
            with pytest.raises(grpc.RpcError, match=fragment) as err:
                provider.set_policy("narrowed", bad)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        full = provider.describe_dataset("narrowed")
        assert [c.name for c in full.columns] == ["region", "nights", "spend", "age", "repeat"]
        assert (full.columns[2].lower, full.columns[2].upper) == (0, 500)
    token = _researcher(server, "narrow_erin", "narrowed")
    with Client(server.address, token) as client:
        seen = client.describe_dataset("narrowed")
        assert [c.name for c in seen.columns] == ["region", "nights", "spend"]
        assert (seen.columns[2].lower, seen.columns[2].upper) == (0, 100)
        [listed] = [d for d in client.datasets() if d.name == "narrowed"]
        assert [c.name for c in listed.columns] == ["region", "nights", "spend"]

        hidden = client.submit(
            'result["n"] = release(dataset().filter(col("age") > 60).count(), epsilon=0.1)',
            "narrowed",
        )
        assert hidden.error_code == "INVALID_ARGUMENT"
        assert "no column 'age'" in hidden.error_message
        assert "region, nights, spend" in hidden.error_message  # the visible ones only
        assert client.budget("narrowed")[0].epsilon_spent == 0

        job = client.submit(
            'r = release(dataset().agg(sum("spend").alias("total")), epsilon=1)\n'
            'result["total"] = r["total"].value',
            "narrowed",
        )
        assert job.state == "SUCCEEDED", job.error_message
    # Laplace noise of scale 100/1 on a sum clamped to [0, 100]: |noise| > 1,400
    # has probability e^-14 < 1e-6. The unclamped sum is ~640,000 further away.
    clamped = sum(min(float(r["spend"]), 100.0) for r in rows)
    raw = sum(float(r["spend"]) for r in rows)
    assert raw - clamped > 100_000
    assert abs(job.result["total"] - clamped) < 1_400

    shown = _cli(server, server.provider_token, "policy", "show", "narrowed")
    assert 'allowed_columns = ["region", "nights", "spend"]' in shown.stdout
    assert "  [bounds]\n  spend = [0, 100]" in shown.stdout


def test_the_per_researcher_cap_is_the_default_grant_and_a_ceiling(server, dataset_files) -> None:
    data, schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("ceiling", data, schema)
        provider.set_policy("ceiling", "researcher_cap_epsilon = 0.5\n")
    server.researcher(None, name="ceiling_fay")
    done = _cli(server, server.provider_token, "dataset", "grant", "ceiling", "--to", "ceiling_fay")
    assert done.returncode == 0, done.stderr
    assert "epsilon cap 0.5" in done.stdout
    over = _cli(
        server,
        server.provider_token,
        *("dataset", "grant", "ceiling", "--to", "ceiling_fay", "--epsilon", "2"),
    )
    assert over.returncode == 1
    assert (
        "FAILED_PRECONDITION" in over.stderr and "at most epsilon=0.5 per researcher" in over.stderr
    )
    with Client(server.address, server.provider_token) as provider:
        provider.set_policy("ceiling", "")  # no policy cap: a grant must name one again
        with pytest.raises(grpc.RpcError, match="grant an epsilon cap"):
            provider.grant("ceiling", "ceiling_fay")
