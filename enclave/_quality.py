"""The quality report a provider reads before (or after) registering a dataset.

Computed from the data, so for its provider only (never in the catalog): row
count, nulls and NaN per column and, against a schema, the values that are not
of the declared type, lie outside the declared bounds or categories, and the
persons with more rows than the privacy unit allows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs import ColumnSpec, PersonLimits, Schema
from jobs._schema import _BOOL_TEXT  # the spellings registration accepts as booleans

_TYPES = {"int": "Int64", "float": "Float64"}


@dataclass
class ColumnQuality:
    """One column's problems (counts of rows), with a few examples of each."""

    name: str
    type: str
    nulls: int = 0
    nan: int = 0
    not_of_type: int = 0
    out_of_bounds: int = 0
    unknown_categories: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class QualityReport:
    """What a provider should know of their file before researchers use it."""

    rows: int
    columns: list[ColumnQuality]
    missing_columns: list[str] = field(default_factory=list)
    undeclared_columns: list[str] = field(default_factory=list)
    persons_over_limit: int = 0
    rows_over_limit: int = 0


def quality_report(frame: Any, schema: Schema | None) -> QualityReport:
    """Check ``frame`` (as read from the provider's file) against ``schema``, if any."""
    return quality_report_from([frame], schema)


def quality_report_from(
    batches: Iterable[Any],
    schema: Schema | None,
    spill: Path | None = None,
    partitions: int = 1,
) -> QualityReport:
    """`quality_report` for a file read as ``batches``, in memory bounded by a batch.

    Counts add up over the batches and the first examples of each problem are
    kept. Persons over the privacy unit's row limit are counted through
    ``partitions`` files of the person column in a temporary folder under
    ``spill`` (`jobs.PersonLimits`), so that a person's rows anywhere in the
    file count together.
    """
    import polars as pl

    report = QualityReport(rows=0, columns=[])
    found: dict[str, ColumnQuality] = {}
    examples: dict[str, dict[str, list[Any]]] = {}
    unit = schema.privacy_unit if schema is not None else None
    ident = unit.identifier if unit is not None else None
    with tempfile.TemporaryDirectory(dir=spill, prefix=".quality-") as folder:
        persons = None
        for frame in batches:
            report.rows += frame.height
            for name in frame.columns:
                spec = schema.column(name) if schema is not None else None
                if name not in found:
                    dtype = str(frame.get_column(name).dtype)
                    found[name] = ColumnQuality(name, spec.type if spec else dtype)
                    examples[name] = {}
                _check(found[name], examples[name], frame.get_column(name), spec)
            if ident is not None and ident in frame.columns:
                if persons is None:
                    persons = _person_counter(ident, unit, Path(folder), partitions)
                persons.add(frame.select(pl.col(ident).cast(pl.String)))
        if persons is not None:
            persons.finish()
            report.persons_over_limit = persons.truncation.persons_truncated
            report.rows_over_limit = persons.truncation.rows_dropped
            persons.close()
    for name, column in found.items():
        column.examples = [
            f"{why}: " + ", ".join(repr(v) for v in shown) for why, shown in examples[name].items()
        ]
        report.columns.append(column)
    if schema is not None:
        report.missing_columns = [n for n in schema.names if n not in found]
        report.undeclared_columns = [n for n in found if schema.column(n) is None]
    return report


def _person_counter(ident: str, unit: Any, folder: Path, partitions: int) -> PersonLimits:
    """Counts each person's rows over the file: the truncation of a one-column schema."""
    schema = Schema(columns=(ColumnSpec(ident, "string", nullable=True),), privacy_unit=unit)
    return PersonLimits(schema, folder, partitions)


def _check(column: ColumnQuality, examples: dict[str, list[Any]], series: Any, spec: Any) -> None:
    """Add one batch of a column to its counts and examples."""
    import polars as pl

    column.nulls += series.null_count()
    values = series
    if spec is not None and spec.type in _TYPES:
        values = series.cast(getattr(pl, _TYPES[spec.type]), strict=False)
        failed = values.is_null() & series.is_not_null()
        column.not_of_type += int(failed.sum())
        _examples(examples, series.filter(failed), "not " + spec.type)
    elif spec is not None and spec.type == "bool" and series.dtype == pl.String:
        failed = series.is_not_null() & ~series.str.to_lowercase().is_in(list(_BOOL_TEXT))
        column.not_of_type += int(failed.sum())
        _examples(examples, series.filter(failed), "not bool")
    if values.dtype.is_float():
        column.nan += int(values.is_nan().sum())
    if spec is not None and spec.bounds is not None and values.dtype.is_numeric():
        lo, hi = spec.bounds
        outside = (values < lo) | (values > hi)
        column.out_of_bounds += int(outside.sum())
        _examples(examples, values.filter(outside), f"outside [{lo}, {hi}]")
    if spec is not None and spec.categories is not None:
        unknown = series.is_not_null() & ~series.cast(pl.String).is_in(spec.categories)
        column.unknown_categories += int(unknown.sum())
        _examples(examples, series.filter(unknown), "not a declared category")


def _examples(examples: dict[str, list[Any]], values: Any, why: str, limit: int = 3) -> None:
    shown = examples.get(why, [])
    if len(shown) < limit:
        more = values.head(limit - len(shown)).to_list()
        if more:
            examples[why] = shown + more


def render(report: QualityReport) -> str:
    """The report as text, for `enclave dataset quality`."""
    lines = [f"{report.rows:,} rows"]
    if report.missing_columns:
        lines.append(f"missing columns: {', '.join(report.missing_columns)}")
    if report.undeclared_columns:
        lines.append(f"columns not in the schema: {', '.join(report.undeclared_columns)}")
    if report.persons_over_limit:
        lines.append(
            f"{report.persons_over_limit:,} person(s) have more rows than the privacy unit "
            f"allows: {report.rows_over_limit:,} row(s) would be dropped"
        )
    for c in report.columns:
        problems = [
            f"{label} {count:,}"
            for label, count in (
                ("nulls", c.nulls),
                ("NaN", c.nan),
                ("not of type", c.not_of_type),
                ("out of bounds", c.out_of_bounds),
                ("unknown categories", c.unknown_categories),
            )
            if count
        ]
        lines.append(f"  {c.name} ({c.type}): " + ("; ".join(problems) or "no problem found"))
        lines.extend(f"      {example}" for example in c.examples)
    return "\n".join(lines)


@dataclass(frozen=True)
class Cleaning:
    """What a provider chose to repair at confirmation, rather than be refused."""

    clamp_to_bounds: bool = False
    drop_invalid_rows: bool = False
    unknown_categories_to_other: bool = False

    def __bool__(self) -> bool:
        return self.clamp_to_bounds or self.drop_invalid_rows or self.unknown_categories_to_other


def clean(frame: Any, schema: Schema, options: Cleaning) -> tuple[Any, int]:
    """Apply the provider's cleaning choices; the frame and the rows it dropped.

    Takes a DataFrame or a LazyFrame and returns the same kind; on a LazyFrame
    the dropped rows are counted in one streaming pass.

    In this order: unknown categories become ``"other"`` (which the schema must
    declare), numbers are clamped into their bounds, then rows still holding a
    value that does not fit (wrong type, outside bounds or categories, a null in
    a non-nullable column, NaN) are dropped. What remains goes through the
    usual strict check.

    Raises:
        SchemaError: mapping to "other" on a column that does not declare it.
    """
    import polars as pl

    from jobs import SchemaError

    found = frame.lazy().collect_schema()
    exprs = []
    invalid = []
    for spec in schema.columns:
        if spec.name not in found:
            continue
        value = pl.col(spec.name)
        if spec.type in _TYPES:
            typed = value.cast(getattr(pl, _TYPES[spec.type]), strict=False)
            bad = typed.is_null() & value.is_not_null()
            if spec.type == "float":
                bad = bad | typed.is_nan()
            if spec.bounds is not None:
                lo, hi = spec.bounds
                if options.clamp_to_bounds:
                    typed = typed.clip(lo, hi)
                    exprs.append(pl.when(bad).then(value).otherwise(typed).alias(spec.name))
                else:
                    bad = bad | (typed < lo) | (typed > hi)
            invalid.append(bad)
        elif spec.categories is not None:
            text = value.cast(pl.String)
            unknown = text.is_not_null() & ~text.is_in(spec.categories)
            if options.unknown_categories_to_other:
                if "other" not in spec.categories:
                    raise SchemaError(
                        f"column {spec.name!r}: to map unknown categories to 'other', "
                        "declare 'other' among its categories"
                    )
                exprs.append(
                    pl.when(unknown).then(pl.lit("other")).otherwise(text).alias(spec.name)
                )
            else:
                invalid.append(unknown)
        elif spec.type == "bool" and found[spec.name] == pl.String:
            invalid.append(value.is_not_null() & ~value.str.to_lowercase().is_in(list(_BOOL_TEXT)))
        if not spec.nullable:
            invalid.append(value.is_null())
    if exprs:
        frame = frame.with_columns(exprs)
    dropped = 0
    if options.drop_invalid_rows and invalid:
        # A comparison with a null is null, not "invalid": nulls are judged by
        # the nullable check alone.
        keep = ~pl.any_horizontal([condition.fill_null(False) for condition in invalid])
        dropped = int(frame.lazy().select((~keep).sum()).collect(engine="streaming").item())
        frame = frame.filter(keep)
    return frame, dropped
