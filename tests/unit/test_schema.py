"""Tests of `jobs._schema`: parsing the public schema and conforming data to it."""

from __future__ import annotations

import io
import json
import textwrap

import polars as pl
import pytest

from jobs import _schema
from jobs._errors import DataMismatch, SchemaError
from jobs._schema import (
    DEFAULT_MAX_ROWS,
    ColumnSpec,
    PrivacyUnit,
    Schema,
    Truncation,
    conform,
    truncate_contributions,
)

# --- parsing ---------------------------------------------------------------------------


def documented_example() -> str:
    """The TOML shown in the module docstring, exactly as documented."""
    doc = _schema.__doc__
    assert doc is not None and "Example::" in doc
    return textwrap.dedent(doc.split("Example::", 1)[1])


def test_documented_example_is_accepted() -> None:
    schema = Schema.from_toml(documented_example())
    assert schema.description == "Overnight stays reported by accommodation providers"
    assert schema.max_rows == 1_000_000
    assert schema.privacy_unit == PrivacyUnit("visitor_id", 5)
    assert schema.privacy_unit.d_in == 5
    assert schema.names == ["visitor_id", "region", "nights"]
    assert schema.column("visitor_id") == ColumnSpec("visitor_id", "string")
    region = schema.column("region")
    assert region is not None and region.categories == ("north", "south")
    assert region.keys == ("north", "south")
    nights = schema.column("nights")
    assert nights is not None and nights.bounds == (1, 30) and nights.is_numeric
    assert schema.column("nope") is None


def test_defaults() -> None:
    schema = Schema.from_toml('[columns.flag]\ntype = "bool"\n')
    assert schema.privacy_unit == PrivacyUnit(None, 1)
    assert schema.privacy_unit.d_in == 1
    assert schema.max_rows == DEFAULT_MAX_ROWS
    flag = schema.column("flag")
    assert flag is not None
    assert flag.numeric_bounds == (0, 1) and flag.keys == (False, True) and not flag.nullable


VALID = """
description = "base"
max_rows = 100
privacy_unit = "row"

[columns.id]
type = "string"

[columns.n]
type = "int"
bounds = [0, 10]

[columns.x]
type = "float"
bounds = [0, 1.5]

[columns.c]
type = "category"
categories = ["a", "b"]
"""


def test_base_schema_is_valid() -> None:
    schema = Schema.from_toml(VALID)
    assert schema.column("x") == ColumnSpec("x", "float", (0.0, 1.5))
    assert schema.column("n") == ColumnSpec("n", "int", (0, 10))


def _with_column(spec: str) -> str:
    return VALID + "\n[columns.extra]\n" + textwrap.dedent(spec)


REJECTED = {
    "bad_toml": ("columns = [", r"not valid TOML"),
    "bad_toml_duplicate_key": (VALID + '\n[columns.n]\ntype = "int"\n', r"not valid TOML"),
    "unknown_top_key": ("owner = 'me'\n" + VALID, r"unknown schema key\(s\): owner"),
    "unknown_column_key": (
        _with_column('type = "int"\nbounds = [0, 1]\nunit = "m"\n'),
        r"column 'extra': unknown key\(s\) unit",
    ),
    "no_columns": ('description = "x"\n', r"\[columns\.NAME\]"),
    "int_without_bounds": (
        _with_column('type = "int"\n'),
        r"'extra': numeric columns need public bounds",
    ),
    "float_without_bounds": (
        _with_column('type = "float"\n'),
        r"'extra': numeric columns need public bounds",
    ),
    "bounds_not_two": (
        _with_column('type = "int"\nbounds = [0, 1, 2]\n'),
        r"'extra': bounds must be two",
    ),
    "bounds_text": (
        _with_column('type = "float"\nbounds = ["0", "1"]\n'),
        r"'extra': bounds must be two",
    ),
    "bounds_bool": (
        _with_column('type = "int"\nbounds = [false, true]\n'),
        r"'extra': bounds must be two",
    ),
    "lo_equals_hi": (
        _with_column('type = "int"\nbounds = [3, 3]\n'),
        r"'extra': bounds must be finite with lo < hi",
    ),
    "lo_above_hi": (_with_column('type = "float"\nbounds = [2.0, 1.0]\n'), r"'extra': .*lo < hi"),
    "infinite_bound": (_with_column('type = "float"\nbounds = [0, inf]\n'), r"'extra': .*finite"),
    "nan_bound": (_with_column('type = "float"\nbounds = [nan, 1]\n'), r"'extra': .*finite"),
    "int_bounds_fractional": (
        _with_column('type = "int"\nbounds = [0, 2.5]\n'),
        r"'extra': bounds of an int column must be integers",
    ),
    "int_bounds_float_typed": (
        _with_column('type = "int"\nbounds = [0.0, 2.0]\n'),
        r"'extra': bounds of an int column must be integers",
    ),
    "bounds_on_category": (
        _with_column('type = "category"\ncategories = ["a"]\nbounds = [0, 1]\n'),
        r"'extra': bounds apply only to int and float",
    ),
    "category_without_categories": (
        _with_column('type = "category"\n'),
        r"'extra': category columns need",
    ),
    "category_empty": (
        _with_column('type = "category"\ncategories = []\n'),
        r"'extra': category columns need",
    ),
    "category_duplicates": (
        _with_column('type = "category"\ncategories = ["a", "b", "a"]\n'),
        r"'extra': category columns need .*distinct",
    ),
    "category_not_strings": (
        _with_column('type = "category"\ncategories = [1, 2]\n'),
        r"'extra': category columns need",
    ),
    "categories_on_string": (
        _with_column('type = "string"\ncategories = ["a"]\n'),
        r"'extra': categories apply only to category",
    ),
    "unknown_type": (
        _with_column('type = "date"\n'),
        r"'extra': type must be one of int, float, bool",
    ),
    "missing_type": (_with_column('description = "no type"\n'), r"'extra': type must be one of"),
    "nullable_not_bool": (
        _with_column('type = "bool"\nnullable = "yes"\n'),
        r"'extra': nullable must be",
    ),
    "bad_column_name": ('[columns."a-b"]\ntype = "bool"\n', r"column name 'a-b' must be letters"),
    "column_name_digit": ('[columns."1a"]\ntype = "bool"\n', r"column name '1a'"),
    "max_rows_zero": (
        "max_rows = 0\n" + VALID.replace("max_rows = 100\n", ""),
        r"max_rows must be a positive",
    ),
    "max_rows_text": (
        'max_rows = "many"\n' + VALID.replace("max_rows = 100\n", ""),
        r"max_rows must be",
    ),
    "description_not_text": (
        VALID.replace('description = "base"', "description = 3"),
        r"description must be a string",
    ),
}

UNITS = {
    "unit_unknown_column": (
        '{ column = "who", max_rows_per_person = 1 }',
        r"privacy_unit.column 'who' is not a declared column",
    ),
    "unit_float_column": (
        '{ column = "x", max_rows_per_person = 1 }',
        r"privacy_unit.column 'x' must be an int or string column",
    ),
    "unit_category_column": (
        '{ column = "c", max_rows_per_person = 1 }',
        r"privacy_unit.column 'c' must be an int or string column",
    ),
    "unit_nullable_column": (
        '{ column = "maybe", max_rows_per_person = 1 }',
        r"privacy_unit.column 'maybe' cannot be nullable",
    ),
    "unit_zero_rows": (
        '{ column = "id", max_rows_per_person = 0 }',
        r"max_rows_per_person must be a positive integer",
    ),
    "unit_negative_rows": (
        '{ column = "id", max_rows_per_person = -2 }',
        r"max_rows_per_person must be a positive integer",
    ),
    "unit_missing_rows": ('{ column = "id" }', r"max_rows_per_person must be a positive integer"),
    "unit_bool_rows": (
        '{ column = "id", max_rows_per_person = true }',
        r"max_rows_per_person must be a positive integer",
    ),
    "unit_float_rows": (
        '{ column = "id", max_rows_per_person = 2.0 }',
        r"max_rows_per_person must be a positive integer",
    ),
    "unit_other_word": ('"person"', r'privacy_unit must be "row" or'),
    "unit_extra_key": (
        '{ column = "id", max_rows_per_person = 1, salt = 3 }',
        r'privacy_unit must be "row" or',
    ),
}
for _name, (_unit, _match) in UNITS.items():
    REJECTED[_name] = (
        VALID.replace('privacy_unit = "row"', f"privacy_unit = {_unit}")
        + '\n[columns.maybe]\ntype = "string"\nnullable = true\n',
        _match,
    )


@pytest.mark.parametrize(("text", "message"), list(REJECTED.values()), ids=list(REJECTED))
def test_from_toml_rejects(text: str, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        Schema.from_toml(text)


def test_privacy_unit_may_be_int_or_string() -> None:
    for ident, type_ in (("id", "string"), ("n", "int")):
        text = VALID.replace(
            'privacy_unit = "row"',
            f'privacy_unit = {{ column = "{ident}", max_rows_per_person = 4 }}',
        )
        unit = Schema.from_toml(text).privacy_unit
        assert unit == PrivacyUnit(ident, 4), type_


@pytest.mark.parametrize("column", ['["id"]', '{ name = "id" }', "7"])
def test_privacy_unit_column_of_the_wrong_toml_type_is_a_schema_error(column: str) -> None:
    """BUG (list/table case): `_parse_unit` tests ``ident not in columns`` on an
    unhashable TOML value and raises TypeError instead of SchemaError."""
    text = VALID.replace(
        'privacy_unit = "row"', f"privacy_unit = {{ column = {column}, max_rows_per_person = 1 }}"
    )
    with pytest.raises(SchemaError, match=r"privacy_unit\.column"):
        Schema.from_toml(text)


# --- JSON round trip -------------------------------------------------------------------

ROUND_TRIP = """
description = "round trip"
max_rows = 5000
privacy_unit = { column = "visitor", max_rows_per_person = 3 }

[columns.zeta]
type = "category"
categories = ["z", "a", "m"]
nullable = true
description = "last letter first"

[columns.visitor]
type = "int"
bounds = [-5, 1000000]

[columns.alpha]
type = "float"
bounds = [-1.5, 2]

[columns.mid]
type = "bool"
nullable = true

[columns.note]
type = "string"
"""


@pytest.mark.parametrize(
    "text",
    [ROUND_TRIP, VALID, documented_example(), '[columns.only]\ntype = "bool"\n'],
    ids=["full", "base", "documented", "minimal"],
)
def test_json_round_trip(text: str) -> None:
    schema = Schema.from_toml(text)
    encoded = schema.to_json()
    back = Schema.from_json(encoded)
    assert back == schema
    assert back.names == schema.names
    assert list(json.loads(encoded)["columns"]) == schema.names
    assert back.to_json() == encoded


def test_round_trip_preserves_declaration_order_and_types() -> None:
    schema = Schema.from_json(Schema.from_toml(ROUND_TRIP).to_json())
    assert schema.names == ["zeta", "visitor", "alpha", "mid", "note"]
    zeta = schema.column("zeta")
    assert zeta is not None and zeta.categories == ("z", "a", "m") and zeta.nullable
    assert zeta.description == "last letter first"
    visitor = schema.column("visitor")
    assert visitor is not None and visitor.bounds == (-5, 1000000)
    assert all(isinstance(b, int) for b in visitor.bounds)
    alpha = schema.column("alpha")
    assert alpha is not None and alpha.bounds == (-1.5, 2.0)
    assert schema.privacy_unit == PrivacyUnit("visitor", 3)
    assert schema.max_rows == 5000


# --- conform ---------------------------------------------------------------------------

DATA_SCHEMA = Schema.from_toml("""
max_rows = 8
privacy_unit = { column = "id", max_rows_per_person = 2 }

[columns.id]
type = "string"

[columns.region]
type = "category"
categories = ["north", "south", "west"]

[columns.nights]
type = "int"
bounds = [1, 14]

[columns.spend]
type = "float"
bounds = [0, 500]

[columns.repeat]
type = "bool"

[columns.note]
type = "string"
nullable = true
""")

GOOD_CSV = """\
id,region,nights,spend,repeat,note
a,north,1,0,true,
a,south,14,500,FALSE,hello
b,north,7,12.5,1,
c,south,3,1e2,0,x
d,north,2,499.99,Yes,
e,south,9,0.5,no,
"""


def read_csv_as_text(text: str) -> pl.DataFrame:
    """Read as the catalog does: every column as text."""
    return pl.read_csv(io.BytesIO(text.encode()), infer_schema=False, encoding="utf8")


def test_conform_casts_csv_text() -> None:
    raw = read_csv_as_text(GOOD_CSV)
    assert all(dtype == pl.String for dtype in raw.dtypes)
    out = conform(raw, DATA_SCHEMA)
    assert out.schema == pl.Schema(
        {
            "id": pl.String,
            "region": pl.String,
            "nights": pl.Int64,
            "spend": pl.Float64,
            "repeat": pl.Boolean,
            "note": pl.String,
        }
    )
    assert out["nights"].to_list() == [1, 14, 7, 3, 2, 9]
    assert out["spend"].to_list() == [0.0, 500.0, 12.5, 100.0, 499.99, 0.5]
    assert out["repeat"].to_list() == [True, False, True, False, True, False]
    assert out["note"].to_list() == [None, "hello", None, "x", None, None]
    assert out["region"].to_list() == ["north", "south", "north", "south", "north", "south"]


def test_conform_returns_columns_in_schema_order() -> None:
    raw = read_csv_as_text(GOOD_CSV).select(["note", "spend", "repeat", "id", "nights", "region"])
    assert conform(raw, DATA_SCHEMA).columns == DATA_SCHEMA.names


def test_conform_accepts_typed_frames() -> None:
    typed = conform(read_csv_as_text(GOOD_CSV), DATA_SCHEMA)
    assert conform(typed, DATA_SCHEMA).equals(typed)


def _csv(replace: dict[tuple[int, str], str], extra_rows: str = "") -> str:
    """GOOD_CSV with cells replaced: (1-based data row, column) -> text."""
    lines = GOOD_CSV.splitlines()
    header = lines[0].split(",")
    for (row, column), value in replace.items():
        cells = lines[row].split(",")
        cells[header.index(column)] = value
        lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n" + extra_rows


MISMATCHES = {
    "missing_column": (
        read_csv_as_text(GOOD_CSV).drop("spend"),
        [r"missing from the data: spend"],
    ),
    "extra_column": (
        read_csv_as_text(GOOD_CSV).with_columns(pl.lit("1").alias("secret")),
        [r"in the data but not in the schema: secret"],
    ),
    "unparsable_int": (
        read_csv_as_text(_csv({(2, "nights"): "seven", (5, "nights"): "2.5"})),
        [r"column 'nights': values are not int: row 2: 'seven'; row 5: '2.5'"],
    ),
    "unparsable_float": (
        read_csv_as_text(_csv({(3, "spend"): "12;5"})),
        [r"column 'spend': values are not float: row 3: '12;5'"],
    ),
    "not_a_bool": (
        read_csv_as_text(_csv({(4, "repeat"): "maybe"})),
        [r"column 'repeat': values are not bool .*: row 4: 'maybe'"],
    ),
    "nan_in_float": (
        read_csv_as_text(_csv({(6, "spend"): "NaN"})),
        [r"column 'spend': NaN values: row 6: nan"],
    ),
    "above_bounds": (
        read_csv_as_text(_csv({(1, "nights"): "15", (3, "spend"): "500.01"})),
        [
            r"column 'nights': 1 value\(s\) outside bounds \[1, 14\]: row 1: 15",
            r"column 'spend': 1 value\(s\) outside bounds \[0.0, 500.0\]: row 3: 500.01",
        ],
    ),
    "below_bounds": (
        read_csv_as_text(_csv({(2, "nights"): "0", (4, "spend"): "-0.01"})),
        [r"column 'nights': .*row 2: 0", r"column 'spend': .*row 4: -0.01"],
    ),
    "unknown_category": (
        read_csv_as_text(_csv({(5, "region"): "east"})),
        [r"column 'region': 1 value\(s\) not among the declared categories: row 5: 'east'"],
    ),
    "null_in_non_nullable": (
        read_csv_as_text(_csv({(3, "nights"): "", (6, "region"): ""})),
        [
            r"column 'nights': 1 null value\(s\) but the column is not nullable: row 3: None",
            r"column 'region': 1 null value\(s\) .*: row 6: None",
        ],
    ),
    "null_bool": (
        read_csv_as_text(_csv({(1, "repeat"): ""})),
        [r"column 'repeat': 1 null value\(s\) .*: row 1: None"],
    ),
    "too_many_rows": (
        read_csv_as_text(GOOD_CSV + "f,north,1,1,true,\ng,north,1,1,true,\nh,north,1,1,true,\n"),
        [r"the data has 9 rows, more than max_rows=8"],
    ),
}


@pytest.mark.parametrize(("frame", "messages"), list(MISMATCHES.values()), ids=list(MISMATCHES))
def test_conform_refuses(frame: pl.DataFrame, messages: list[str]) -> None:
    with pytest.raises(DataMismatch) as caught:
        conform(frame, DATA_SCHEMA)
    for message in messages:
        assert caught.match(message)


def test_conform_lists_only_the_first_five_rows() -> None:
    rows = {(r, "nights"): str(100 + r) for r in range(1, 7)}
    with pytest.raises(DataMismatch) as caught:
        conform(read_csv_as_text(_csv(rows)), DATA_SCHEMA)
    message = str(caught.value)
    assert "6 value(s) outside bounds" in message
    assert "row 1: 101; row 2: 102; row 3: 103; row 4: 104; row 5: 105 (and 1 more)" in message
    assert "106" not in message


def test_conform_reports_every_bad_column_at_once() -> None:
    text = _csv({(1, "nights"): "x", (2, "region"): "east", (3, "repeat"): "2"})
    with pytest.raises(DataMismatch) as caught:
        conform(read_csv_as_text(text), DATA_SCHEMA)
    message = str(caught.value)
    assert "column 'nights'" in message
    assert "column 'region'" in message
    assert "column 'repeat'" in message


def test_nullable_columns_accept_nulls() -> None:
    schema = Schema.from_toml(
        '[columns.n]\ntype = "int"\nbounds = [0, 5]\nnullable = true\n'
        '[columns.c]\ntype = "category"\ncategories = ["a"]\nnullable = true\n'
    )
    out = conform(read_csv_as_text("n,c\n,a\n3,\n"), schema)
    assert out["n"].to_list() == [None, 3]
    assert out["c"].to_list() == ["a", None]


@pytest.mark.parametrize(
    ("column", "series"),
    [
        ("nights", pl.Series("nights", [1, 14, 7, 3, 2.5, 9], dtype=pl.Float64)),
        ("repeat", pl.Series("repeat", [1, 0, 1, 0, 2, 0], dtype=pl.Int64)),
    ],
    ids=["fraction_into_int", "two_into_bool"],
)
def test_conform_refuses_lossy_casts_of_typed_columns(column: str, series: pl.Series) -> None:
    """Parquet uploads reach conform() with typed columns; Polars' strict cast
    would truncate 2.5 -> 2 (Float64 -> Int64) and map 2 -> True (Int64 -> Boolean),
    so the stored data would silently differ from what the provider uploaded."""
    frame = read_csv_as_text(GOOD_CSV).with_columns(series)
    with pytest.raises(DataMismatch, match=f"column '{column}'"):
        conform(frame, DATA_SCHEMA)


def test_registration_truncates_each_person_to_max_rows_in_file_order() -> None:
    """Person 'a' has three rows for a bound of two: the first two are kept."""
    frame = conform(read_csv_as_text(_csv({(3, "id"): "a"})), DATA_SCHEMA)
    kept, truncation = truncate_contributions(frame, DATA_SCHEMA)
    assert truncation == Truncation(rows_dropped=1, persons_truncated=1)
    assert kept.height == frame.height - 1
    assert kept.filter(pl.col("id") == "a").get_column("nights").to_list() == [1, 14]
    assert kept.columns == frame.columns
    unchanged, none = truncate_contributions(kept, DATA_SCHEMA)
    assert none == Truncation()
    assert unchanged.equals(kept)


def test_registration_truncates_each_person_to_their_first_groups() -> None:
    schema = Schema.from_dict(
        {
            "privacy_unit": {"column": "id", "max_rows_per_person": 3},
            "columns": {
                "id": {"type": "string"},
                "g": {
                    "type": "category",
                    "categories": ["a", "b", "c"],
                    "max_groups_per_person": 1,
                },
                "x": {"type": "int", "bounds": [0, 10]},
            },
        }
    )
    frame = pl.DataFrame(
        {
            "id": ["p", "p", "q", "p", "p", "q", "q", "q", "r"],
            "g": ["b", "a", "a", "b", "b", "b", "a", "a", "c"],
            "x": list(range(9)),
        }
    )
    kept, truncation = truncate_contributions(frame, schema)
    # p: first three rows are x=0 (b), 1 (a), 3 (b); its first group is b -> 0, 3.
    # q: first three rows are 2 (a), 5 (b), 6 (a); its first group is a -> 2, 6.
    assert kept.get_column("x").to_list() == [0, 2, 3, 6, 8]
    assert truncation == Truncation(rows_dropped=4, persons_truncated=2)
    per_person = kept.group_by("id").agg(pl.col("g").n_unique(), pl.len())
    assert per_person.get_column("g").max() == 1
    assert per_person.get_column("len").max() <= 3


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"privacy_unit": "row"}, "needs a privacy unit that identifies people"),
        ({"g_spec": {"type": "float", "bounds": [0, 1]}}, "not to float columns"),
        ({"g_max": 0}, "positive integer"),
        ({"on_id": True}, "is the privacy unit"),
    ],
)
def test_max_groups_per_person_is_checked(extra: dict[str, object], fragment: str) -> None:
    g_spec: dict[str, object] = extra.get("g_spec") or {"type": "category", "categories": ["a"]}  # type: ignore[assignment]
    g_spec = dict(g_spec, max_groups_per_person=extra.get("g_max", 1))
    id_spec: dict[str, object] = {"type": "string"}
    if extra.get("on_id"):
        id_spec["max_groups_per_person"] = 1
    raw = {
        "privacy_unit": extra.get("privacy_unit", {"column": "id", "max_rows_per_person": 2}),
        "columns": {"id": id_spec, "g": g_spec},
    }
    with pytest.raises(SchemaError, match=fragment):
        Schema.from_dict(raw)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"columns": {"__keep": {"type": "bool"}}}, "reserves"),
        (
            {
                "privacy_unit": {"column": "id", "max_rows_per_person": 2},
                "columns": {
                    "id": {"type": "string"},
                    "g": {"type": "category", "categories": ["a"], "max_groups_per_person": 3},
                },
            },
            "cannot exceed max_rows_per_person=2",
        ),
        (
            {
                "privacy_unit": {"column": "id", "max_rows_per_person": 2**40},
                "columns": {"id": {"type": "string"}},
            },
            "at most 100,000",
        ),
    ],
)
def test_names_and_person_bounds_that_would_break_storage_are_refused(
    raw: dict[str, object], fragment: str
) -> None:
    with pytest.raises(SchemaError, match=fragment):
        Schema.from_dict(raw)


# --- a provider's view -------------------------------------------------------------------


def test_a_policy_view_hides_columns_and_narrows_bounds(tmp_path) -> None:
    schema = Schema.from_toml(documented_example())
    handle = _schema.DatasetHandle("stays", schema, tmp_path / "f.parquet")
    view = handle.restricted(("region", "nights"), (("nights", 1, 7),))
    assert view.schema.names == ["region", "nights"]
    assert view.schema.column("nights").bounds == (1, 7)  # type: ignore[union-attr]
    assert view.schema.privacy_unit == schema.privacy_unit  # a hidden identifier still bounds
    assert view.clamps == (("nights", 1, 7),)
    assert handle.restricted(None, None) == handle
    # Narrowing a hidden column clamps nothing: it is never read.
    assert handle.restricted(("region",), (("nights", 1, 7),)).clamps == ()
    for allowed, bounds, fragment in (
        (("nope",), None, "no column.*'nope'"),
        (None, (("nights", 0, 7),), "not inside"),
        (None, (("nights", 1, 6.5),), "whole numbers"),
        (None, (("region", 0, 1),), "only to int and float"),
    ):
        with pytest.raises(SchemaError, match=fragment):
            handle.restricted(allowed, bounds)
