"""Every script in docs/job-api.md and jobs/examples/ runs, as documented, on the
demo schema (a small sample of the demo generator's data)."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import pytest

from enclave import Client

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "job-api.md"
DOC_BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
EXAMPLES = sorted((ROOT / "jobs" / "examples").glob("*.py"))


@pytest.fixture(scope="module")
def tourism(server, tmp_path_factory) -> str:
    sys.path.insert(0, str(ROOT / "demo"))
    try:
        from make_dataset import COLUMNS, generate
    finally:
        sys.path.pop(0)
    schema = ROOT / "demo" / "tourism_stays.schema.toml"
    path = tmp_path_factory.mktemp("tourism") / "stays.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(generate(3000, 11))
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("tourism_stays", path, schema)
    return "tourism_stays"


@pytest.fixture(scope="module")
def tourism_zcdp(server, tourism, tmp_path_factory) -> str:
    """The same rows, in a dataset whose provider chose zCDP."""
    schema = tmp_path_factory.mktemp("zcdp") / "stays.schema.toml"
    schema.write_text(
        'privacy_definition = "zcdp"\n' + (ROOT / "demo" / "tourism_stays.schema.toml").read_text()
    )
    rows = next(tmp_path_factory.getbasetemp().glob("tourism*/stays.csv"))
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("tourism_stays_zcdp", rows, schema)
    return "tourism_stays_zcdp"


def test_the_doc_has_examples() -> None:
    assert len(DOC_BLOCKS) >= 7


@pytest.mark.parametrize("index", range(len(DOC_BLOCKS)))
def test_doc_example_runs(server, tourism, tourism_zcdp, index) -> None:
    name = f"doc_reader_{index}"
    token = server.researcher(None, name=name)
    zcdp = "rho=" in DOC_BLOCKS[index]  # examples for zCDP datasets run on one
    with Client(server.address, server.provider_token) as provider:
        if zcdp:
            provider.grant(tourism_zcdp, name, None, "1e-5", rho=1)
        else:
            provider.grant(tourism, name, 10, "1e-5")
    with Client(server.address, token) as client:
        job = client.run(DOC_BLOCKS[index], tourism_zcdp if zcdp else tourism)
    assert job.result
    if zcdp:
        assert job.cost.rho > 0
        assert job.cost.epsilon == 0


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_script_runs(server, tourism, script) -> None:
    name = f"example_{script.stem}"
    token = server.researcher(None, name=name)
    with Client(server.address, server.provider_token) as provider:
        provider.grant(tourism, name, 10, "1e-5")
    with Client(server.address, token) as client:
        estimate = client.estimate(script.read_text(), tourism)
        job = client.run(script.read_text(), tourism)
    assert job.result
    assert estimate.epsilon == job.cost_epsilon


def test_the_readme_policy_is_accepted_for_the_demo_dataset(server, tourism) -> None:
    """The policy the README shows is one a provider can set on the demo dataset."""
    [policy] = [
        block
        for block in re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
        if "per_release_max_epsilon" in block
    ]
    with Client(server.address, server.provider_token) as provider:
        provider.set_policy(tourism, policy)
        try:
            [version] = provider.policy(tourism).versions
            assert "allowed_columns" in version.policy_toml and "[bounds]" in version.policy_toml
        finally:
            provider.set_policy(tourism, "")  # the other tests run without limits
