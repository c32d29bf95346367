"""What a researcher's catalog shows: the policy in force and their own budget.

`ListDatasets`/`DescribeDataset` (and `enclave datasets`) carry the provider's
policy and, for a researcher, that researcher's remaining budget, never
anyone else's; providers see the policy but no budget.
"""

from __future__ import annotations

from decimal import Decimal

from enclave import Client
from enclave._cli import _describe

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
