"""What a researcher's catalog shows: the policy in force and their own budget.

`ListDatasets`/`DescribeDataset` (and `enclave datasets`) carry the provider's
policy and, for a researcher, that researcher's remaining budget, never
anyone else's; providers see the policy but no budget.
"""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from enclave import Client
from enclave._cli import _describe, _usage_text

POLICY = "per_release_max_epsilon = 1\nmin_count = 5\n"


def test_the_catalog_shows_the_policy_and_the_callers_budget(own_server) -> None:
    own = own_server()
    with Client(own.address, own.researcher) as alice:
        before = alice.describe_dataset("stays")
        assert before.policy_toml == ""
        assert Decimal(before.budget.epsilon_remaining) == Decimal(5)
        alice.run('result["n"] = release(dataset().count(), epsilon=0.5).value', "stays")
    with Client(own.address, own.provider) as provider:
        provider.set_policy("stays", POLICY)
        [owned] = provider.datasets()
    assert "min_count = 5" in owned.policy_toml
    assert not owned.HasField("budget")  # a provider has no budget of their own here
    with Client(own.address, own.researcher) as alice:
        [listed] = alice.datasets()
        described = alice.describe_dataset("stays")
    for info in (listed, described):
        assert "per_release_max_epsilon = 1" in info.policy_toml
        assert "min_count = 5" in info.policy_toml
        assert Decimal(info.budget.epsilon_remaining) == Decimal("4.5")
        assert Decimal(info.budget.epsilon_cap) == Decimal(5)
    text = _describe(described)
    assert "policy: " in text and "min_count = 5" in text
    assert "your budget: epsilon 4.5 of 5 remaining" in text


def test_a_provider_sees_how_its_dataset_is_used(own_server) -> None:
    """Total spent beside the caps, jobs and releases, every grant with its expiry;
    another provider and the researchers see none of it."""
    own = own_server()
    with Client(own.address, own.provider) as provider:
        provider.set_policy("stays", "dataset_cap_epsilon = 20\n")
    with Client(own.address, own.researcher) as alice:
        for eps in ("0.25", "0.5"):
            alice.run(f'result["n"] = release(dataset().count(), epsilon={eps}).value', "stays")
        alice.submit('result["x"] = 1', "stays")  # a job with no release
        with pytest.raises(grpc.RpcError) as err:
            alice.dataset_usage("stays")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with Client(own.address, own.provider) as provider:
        usage = provider.dataset_usage("stays")
    assert (usage.jobs, usage.releases) == (3, 2)
    assert Decimal(usage.spent.epsilon) == Decimal("0.75")
    assert "dataset_cap_epsilon = 20" in usage.policy_toml
    [grant] = usage.grants
    assert grant.principal == "alice"
    assert (Decimal(grant.epsilon_cap), Decimal(grant.epsilon_spent)) == (5, Decimal("0.75"))
    text = _usage_text(usage)
    assert "3 job(s), 2 release(s) charged" in text
    assert "alice" in text and "never" in text
    _p, stranger = own.app.principals.create("other_prov", "provider", created_by="t")
    with Client(own.address, stranger) as other, pytest.raises(grpc.RpcError) as err:
        other.dataset_usage("stays")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
