"""The provider's quality report: counts of problems, with examples, theirs only."""

from __future__ import annotations

from pathlib import Path

import grpc
import polars as pl
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


def test_cleaning_at_confirmation_repairs_what_the_provider_chose(server, tmp_path: Path) -> None:
    schema = SCHEMA.replace(
        'categories = ["north", "south"]', 'categories = ["north", "south", "other"]'
    )
    path = tmp_path / "messy2.csv"
    path.write_text(CSV)
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("cleaned", path, None)
        with pytest.raises(grpc.RpcError) as err:  # as it is, the data is refused
            provider.confirm_dataset("cleaned", schema)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = provider.confirm_dataset(
            "cleaned",
            schema,
            clamp_to_bounds=True,
            unknown_categories_to_other=True,
            drop_invalid_rows=True,
        )
    # "x" (not an int) and NaN rows dropped; p1's third row truncated.
    assert (info.rows_cleaned, info.rows_dropped) == (2, 1)
    stored = server.app.catalog.get("cleaned")
    assert stored is not None
    frame = pl.read_parquet(stored.path)
    assert frame.height == 2 and frame["person"].to_list() == ["p1", "p1"]


def test_clamping_and_other_keep_every_row(server, tmp_path: Path) -> None:
    schema = SCHEMA.replace(
        'categories = ["north", "south"]', 'categories = ["north", "south", "other"]'
    )
    path = tmp_path / "fixable.csv"
    path.write_text("person,age,region,score\nq1,150,west,0.5\nq2,10,north,2\n")
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("fixable", path, None)
        info = provider.confirm_dataset(
            "fixable", schema, clamp_to_bounds=True, unknown_categories_to_other=True
        )
    assert info.rows_cleaned == 0
    stored = server.app.catalog.get("fixable")
    assert stored is not None
    rows = pl.read_parquet(stored.path).sort("person").to_dicts()
    assert [(r["age"], r["region"], r["score"]) for r in rows] == [
        (99, "other", 0.5),
        (18, "north", 1.0),
    ]


def test_mapping_to_other_needs_other_declared(server, tmp_path: Path) -> None:
    path = tmp_path / "nother.csv"
    path.write_text("person,age,region,score\nr1,20,west,0.5\n")
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("nother", path, None)
        with pytest.raises(grpc.RpcError) as err:
            provider.confirm_dataset("nother", SCHEMA, unknown_categories_to_other=True)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "declare 'other'" in err.value.details()
