"""The provider's quality report: counts of problems, with examples, theirs only."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from enclave import Client

SCHEMA = """
max_rows = 1000
privacy_unit = { column = "person", max_rows_per_person = 2 }

[columns.person]
type = "string"

[columns.age]
type = "int"
bounds = [18, 99]

[columns.region]
type = "category"
categories = ["north", "south"]

[columns.score]
type = "float"
bounds = [0, 1]
nullable = true
"""
# person p1 has three rows (one too many); "x" is not an int, 150 is out of
# bounds, "west" is not a category, one score is missing and one is NaN.
CSV = """person,age,region,score
p1,20,north,0.5
p1,30,south,0.25
p1,40,north,
p2,x,south,0.75
p3,150,west,NaN
"""


@pytest.fixture
def draft(server, tmp_path: Path) -> str:
    path = tmp_path / "messy.csv"
    path.write_text(CSV)
    with Client(server.address, server.provider_token) as provider:
        assert provider.register_dataset("messy", path, None).draft
    return "messy"


def test_a_drafts_report_counts_each_problem_with_examples(server, draft) -> None:
    with Client(server.address, server.provider_token) as provider:
        bare = provider.quality_report(draft)
        checked = provider.quality_report(draft, SCHEMA)
    assert bare.draft and bare.rows == 5
    by_name = {c.name: c for c in bare.columns}
    assert by_name["score"].nulls == 1  # without a schema: nulls and NaN only
    by_name = {c.name: c for c in checked.columns}
    assert by_name["age"].not_of_type == 1 and by_name["age"].out_of_bounds == 1
    assert any("'x'" in e for e in by_name["age"].examples)
    assert by_name["region"].unknown_categories == 1
    assert any("'west'" in e for e in by_name["region"].examples)
    assert by_name["score"].nulls == 1 and by_name["score"].nan == 1
    assert (checked.persons_over_limit, checked.rows_over_limit) == (1, 1)
    assert "out of bounds 1" in checked.text and "would be dropped" in checked.text


def test_the_report_is_its_providers_only(server, draft) -> None:
    with Client(server.address, server.researcher(None)) as researcher:
        with pytest.raises(grpc.RpcError) as err:
            researcher.quality_report(draft)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as err:
            researcher.quality_report("stays")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with Client(server.address, server.admin_token) as admin:
        stranger = admin.create_principal("quality_stranger", "provider")
    with Client(server.address, stranger) as other:
        for name in (draft, "stays"):
            with pytest.raises(grpc.RpcError) as err:
                other.quality_report(name)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_registered_dataset_is_checked_against_its_schema(server) -> None:
    with Client(server.address, server.provider_token) as provider:
        report = provider.quality_report("stays")
    assert not report.draft and report.rows > 0
    assert all(c.not_of_type == c.out_of_bounds == 0 for c in report.columns)
