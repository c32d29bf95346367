"""Registration a batch at a time gives what registering the whole file at once gives.

Large uploads are read in batches of a few MB (`enclave._catalog.read_batches`),
checked batch by batch (`jobs.Conformer`) and truncated through partition
files (`jobs.PersonLimits`), so that memory does not grow with the file. These
tests cut small files into many tiny batches and partitions and compare with
the in-memory path, including the cases that make cutting hard: quoted values
holding commas, quotes and newlines; problems spread over several batches; the
same person's rows in many batches and partitions.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave._catalog import _convert, read_batches
from jobs import Conformer, DataMismatch, PersonLimits, Schema, conform, truncate_contributions

TRICKY_CSV = (
    "id,note,n\n"
    'a,"plain",1\n'
    'b,"with, comma",2\n'
    'c,"with ""quotes"" inside",3\n'
    'd,"two\nlines",4\n'
    'e,"""\n""",5\n'
    "f,,6\n"
    'g,"ends with newline\n",7\n'
)


@pytest.mark.parametrize("batch_bytes", [1, 7, 16, 64, 1 << 20])
def test_csv_batches_are_cut_between_records(tmp_path: Path, batch_bytes: int) -> None:
    path = tmp_path / "t.csv"
    path.write_text(TRICKY_CSV)
    batches = list(read_batches(path, "csv", batch_bytes))
    whole = pl.read_csv(io.BytesIO(TRICKY_CSV.encode()), infer_schema=False)
    assert pl.concat(batches).equals(whole)
    if batch_bytes < 16:
        assert len(batches) > 1


def test_csv_without_final_newline_and_with_crlf(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\r\n1,x\r\n2,y\r\n3,z")
    batches = list(read_batches(path, "csv", 4))
    assert pl.concat(batches).get_column("b").to_list() == ["x", "y", "z"]


def test_a_header_only_csv_is_one_empty_batch(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n")
    [batch] = list(read_batches(path, "csv", 4))
    assert batch.columns == ["a", "b"]
    assert batch.height == 0


def test_ndjson_batches(tmp_path: Path) -> None:
    rows = [{"id": f"p{i}", "n": i, "x": i / 2} for i in range(50)]
    path = tmp_path / "t.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    batches = list(read_batches(path, "ndjson", 100))
    assert len(batches) > 5
    assert pl.concat(batches).to_dicts() == rows


def test_ndjson_types_are_inferred_per_batch_and_absent_keys_are_null(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key null (or absent) for the first batches and filled later still registers."""
    import enclave._catalog as catalog

    rows: list[dict[str, object]] = [{"id": f"p{i}", "n": i} for i in range(40)]
    rows += [{"id": f"q{i}", "n": i, "note": f"text {i}"} for i in range(40)]
    rows[0]["note"] = None
    path = tmp_path / "t.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    schema = Schema.from_toml(
        '[columns.id]\ntype = "string"\n[columns.n]\ntype = "int"\nbounds = [0, 100]\n'
        '[columns.note]\ntype = "string"\nnullable = true\n'
    )
    monkeypatch.setattr(catalog, "BATCH_BYTES", 200)
    target = tmp_path / "out.parquet"
    _convert(path, "ndjson", schema, None, target)
    stored = pl.read_parquet(target)
    assert stored["note"].to_list() == [None] * 40 + [f"text {i}" for i in range(40)]
    assert stored["n"].to_list() == list(range(40)) * 2


def test_parquet_batches(tmp_path: Path) -> None:
    frame = pl.DataFrame({"n": list(range(200_000))})
    path = tmp_path / "t.parquet"
    frame.write_parquet(path, row_group_size=30_000)
    batches = list(read_batches(path, "parquet"))
    assert len(batches) > 1
    assert pl.concat(batches).equals(frame)


SCHEMA = Schema.from_dict(
    {
        "max_rows": 10_000,
        "columns": {
            "id": {"type": "string"},
            "n": {"type": "int", "bounds": [0, 9]},
            "c": {"type": "category", "categories": ["a", "b"]},
        },
    }
)


def _split(frame: pl.DataFrame, sizes: list[int]) -> list[pl.DataFrame]:
    out, start = [], 0
    for size in sizes:
        out.append(frame.slice(start, size))
        start += size
    out.append(frame.slice(start))
    return out


def test_problems_across_batches_read_as_one_refusal_with_file_row_numbers() -> None:
    """Rows 3, 8 and 12 are bad, in three different batches; the message is the same."""
    n = [str(i % 10) for i in range(15)]
    n[2], n[7], n[11] = "x", "12", "-1"
    frame = pl.DataFrame({"id": [f"p{i}" for i in range(15)], "n": n, "c": ["a"] * 15})
    frame = frame.with_columns(pl.col("n").cast(pl.String))
    with pytest.raises(DataMismatch) as whole:
        conform(frame, SCHEMA)
    checker = Conformer(SCHEMA)
    for batch in _split(frame, [4, 5, 1]):
        checker.observe(batch)
    with pytest.raises(DataMismatch) as batched:
        checker.finish()
    assert str(batched.value) == str(whole.value)
    assert "values are not int: row 3: 'x'" in str(whole.value)


def test_bound_problems_in_several_batches_are_counted_and_shown_in_order() -> None:
    values = [str(20 + i) for i in range(8)] + ["1"] * 4
    frame = pl.DataFrame({"id": ["p"] * 12, "n": values, "c": ["a"] * 12})
    checker = Conformer(SCHEMA)
    for batch in _split(frame, [3, 3, 1]):
        checker.observe(batch)
    with pytest.raises(DataMismatch) as caught:
        checker.finish()
    assert (
        "8 value(s) outside bounds [0, 9]: row 1: 20; row 2: 21; row 3: 22; row 4: 23; "
        "row 5: 24 (and 3 more)"
    ) in str(caught.value)


def test_max_keys_and_max_rows_count_over_every_batch() -> None:
    schema = Schema.from_dict(
        {"max_rows": 6, "columns": {"town": {"type": "string", "max_keys": 3}}}
    )
    checker = Conformer(schema)
    for town in ["a", "b", "c", "d"]:
        checker.observe(pl.DataFrame({"town": [town]}))
    with pytest.raises(DataMismatch, match="more than max_keys=3"):
        checker.finish()
    checker = Conformer(schema)
    for _ in range(7):
        checker.observe(pl.DataFrame({"town": ["a"]}))
    with pytest.raises(DataMismatch, match="7 rows, more than max_rows=6"):
        checker.finish()


PERSON_SCHEMA = Schema.from_dict(
    {
        "max_rows": 100_000,
        "privacy_unit": {"column": "person", "max_rows_per_person": 3},
        "columns": {
            "person": {"type": "string"},
            "g": {"type": "int", "bounds": [0, 5], "max_groups_per_person": 2, "nullable": True},
            "x": {"type": "int", "bounds": [0, 1_000_000]},
        },
    }
)


@settings(max_examples=40, deadline=None)
@given(
    persons=st.lists(st.integers(0, 12), min_size=1, max_size=200),
    groups=st.lists(st.one_of(st.none(), st.integers(0, 5)), min_size=200, max_size=200),
    cuts=st.lists(st.integers(1, 40), max_size=10),
    partitions=st.integers(1, 5),
)
def test_partitioned_truncation_keeps_exactly_the_rows_of_the_whole_file(
    tmp_path_factory: pytest.TempPathFactory,
    persons: list[int],
    groups: list[int | None],
    cuts: list[int],
    partitions: int,
) -> None:
    frame = pl.DataFrame(
        {
            "person": [f"p{p}" for p in persons],
            "g": groups[: len(persons)],
            "x": list(range(len(persons))),
        },
        schema={"person": pl.String, "g": pl.Int64, "x": pl.Int64},
    )
    expected, summary = truncate_contributions(frame, PERSON_SCHEMA)
    folder = tmp_path_factory.mktemp("spill")
    limits = PersonLimits(PERSON_SCHEMA, folder, partitions)
    batches = _split(frame, cuts)
    for batch in batches:
        limits.add(batch)
    limits.finish()
    assert list(folder.iterdir()) == []  # the partition files are gone
    kept, offset = [], 0
    for batch in batches:
        kept.append(limits.drop(batch, offset))
        offset += batch.height
    assert pl.concat(kept).equals(expected)
    assert limits.truncation == summary


def test_convert_registers_a_file_cut_in_many_batches_like_the_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end through `_convert`: tiny batches and partitions, same Parquet."""
    import enclave._catalog as catalog

    rnd = random.Random(7)
    lines = ["person,g,x"]
    for i in range(2_000):
        lines.append(f"p{rnd.randrange(300)},{rnd.randrange(6)},{i}")
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    expected, summary = truncate_contributions(
        conform(pl.read_csv(path, infer_schema=False), PERSON_SCHEMA), PERSON_SCHEMA
    )
    monkeypatch.setattr(catalog, "BATCH_BYTES", 512)
    monkeypatch.setattr(catalog, "PERSON_PARTITION_BYTES", 4096)
    target = tmp_path / "out.parquet"
    truncation = _convert(path, "csv", PERSON_SCHEMA, None, target)
    assert pl.read_parquet(target).equals(expected)
    assert truncation == summary
    assert summary.rows_dropped > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "out.parquet"]


# --- drafts' proposals and quality reports, a batch at a time -----------------------------

PROPOSAL_CSV = "person,n,x,flag,region,note,empty\n" + "".join(
    f"p{i % 37},{i},{i / 4 if i > 100 else i},{'true' if i % 3 else 'false'},"
    f"{('north', 'south', 'east')[i % 3]},remark {i},\n"
    for i in range(400)
)


def test_a_proposal_from_many_batches_is_the_proposal_from_the_whole(tmp_path: Path) -> None:
    """Types settled over every batch: x reads as int in the first rows, float later."""
    from enclave._proposal import propose_from, propose_schema

    path = tmp_path / "d.csv"
    path.write_text(PROPOSAL_CSV)
    whole = propose_schema(pl.read_csv(path, infer_schema=False))
    batches = list(read_batches(path, "csv", 256))
    assert len(batches) > 20
    assert propose_from(batches) == whole
    assert '[columns."x"]\ntype = "float"\n# observed: 0.0 to 100.0' in whole
    assert '[columns."n"]\ntype = "int"\n# observed: 0 to 399' in whole
    assert '[columns."flag"]\ntype = "bool"' in whole
    assert 'categories = ["east", "north", "south"]' in whole
    assert "more than 50 distinct values" in whole  # note, without holding them all
    assert '[columns."empty"]\ntype = "category"\ncategories = []' in whole


def test_a_quality_report_from_many_batches_is_the_report_of_the_whole(tmp_path: Path) -> None:
    """Counts add up, the first examples are kept, and a person's rows in many
    batches and partitions count together."""
    from enclave._quality import quality_report, quality_report_from

    rows = [
        f"p{i % 37},{i if i % 50 else 'x'},{i / 4},{('north', 'south', 'mars')[i % 3]}"
        for i in range(400)
    ]
    path = tmp_path / "d.csv"
    path.write_text("person,n,x,region\n" + "\n".join(rows) + "\n")
    schema = Schema.from_toml(
        'privacy_unit = { column = "person", max_rows_per_person = 8 }\n'
        '[columns.person]\ntype = "string"\n'
        '[columns.n]\ntype = "int"\nbounds = [0, 300]\n'
        '[columns.x]\ntype = "float"\nbounds = [0, 50]\n'
        '[columns.region]\ntype = "category"\ncategories = ["north", "south"]\n'
    )
    whole = quality_report(pl.read_csv(path, infer_schema=False), schema)
    batched = quality_report_from(read_batches(path, "csv", 300), schema, tmp_path, 5)
    assert batched == whole
    n = {c.name: c for c in whole.columns}["n"]
    assert (n.not_of_type, n.out_of_bounds) == (8, 99 - 1)  # 'x' rows; 301..399 but 350
    assert (whole.persons_over_limit, whole.rows_over_limit) == (37, 400 - 37 * 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]  # spill removed


def test_a_quote_that_never_closes_is_refused_naming_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Instead of reading the rest of the file as one value (quadratic, unbounded)."""
    import enclave._catalog as catalog

    monkeypatch.setattr(catalog, "MAX_RECORD_BYTES", 2_000)
    path = tmp_path / "d.csv"
    path.write_text('id,note\n1,fine\n2,a 5" screen\n' + "".join(f"{i},x\n" for i in range(3000)))
    with pytest.raises(DataMismatch, match=r"record starting at line 3 runs over .* never closes"):
        list(read_batches(path, "csv", 256))


def test_a_csv_with_cr_only_line_ends_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(b"id,n\r" + b"".join(b"%d,1\r" % i for i in range(1000)))
    with pytest.raises(DataMismatch, match=r"CR alone .* save it as \"CSV UTF-8\""):
        list(read_batches(path, "csv"))


def test_a_header_without_line_end_is_refused_not_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import enclave._catalog as catalog

    monkeypatch.setattr(catalog, "MAX_HEADER_BYTES", 1_000)
    path = tmp_path / "one.csv"
    path.write_text(",".join(f"c{i}" for i in range(2000)))
    with pytest.raises(DataMismatch, match=r"header.* is longer than 1,000 bytes"):
        list(read_batches(path, "csv"))


def test_ndjson_types_are_settled_over_the_whole_file(tmp_path: Path) -> None:
    """An id written 7 in one batch and 7.0 in another is one person, as in a whole-file
    read; a key first met late is in every batch (null before)."""
    rows = [{"id": 7, "n": i} for i in range(30)] + [{"id": 7.0, "n": 1, "late": "x"}]
    path = tmp_path / "t.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    batches = list(read_batches(path, "ndjson", 100))
    assert len(batches) > 3
    whole = pl.read_ndjson(path, infer_schema_length=None)
    assert all(b.schema == whole.schema for b in batches)
    assert pl.concat(batches).equals(whole)
    assert whole["id"].n_unique() == 1
