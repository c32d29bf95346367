"""Dataset schemas: the provider's public metadata, and the check that data obeys it.

A schema is public. Everything the privacy analysis assumes (column types,
numeric bounds, category lists, the privacy unit, an upper bound on the number
of rows) comes from here and never from the data, so that costs depend on the
plan and this file alone (invariant 4). Registration then *checks* the data
against those claims and refuses it otherwise, so the claims hold for what is
stored.

Example::

    description = "Overnight stays reported by accommodation providers"
    max_rows = 1_000_000
    privacy_unit = { column = "visitor_id", max_rows_per_person = 5 }
    # "pure_dp" (the default: budgets in epsilon) or "zcdp" (budgets in rho).
    privacy_definition = "zcdp"
    # zCDP only: the delta at which rho is also shown as (epsilon, delta).
    equivalent_delta = 1e-7

    [columns.visitor_id]
    type = "string"

    [columns.region]
    type = "category"
    categories = ["north", "south"]

    [columns.nights]
    type = "int"
    bounds = [1, 30]
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._errors import DataMismatch, SchemaError

ColumnType = Literal["int", "float", "bool", "category", "string"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("int", "float", "bool", "category", "string")
#: Default public upper bound on a dataset's size. It enters the sensitivity of
#: float sums (OpenDP accounts for float rounding with it), so providers with
#: larger tables must declare ``max_rows``.
DEFAULT_MAX_ROWS = 10_000_000
#: An int column with at most this many values in its bounds has public keys.
MAX_INT_KEYS = 1_000
#: Beyond this, noise scaled to one person would swamp any statistic anyway.
_MAX_ROWS_PER_PERSON = 100_000
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column's public description."""

    name: str
    type: ColumnType
    bounds: tuple[float, float] | None = None
    categories: tuple[str, ...] | None = None
    nullable: bool = False
    description: str = ""
    #: Public upper bound on the number of distinct values (string/int columns
    #: grouped without public keys); it keeps float sums per group accurate.
    max_keys: int | None = None
    #: Most distinct values of this column one person's rows may hold (identifier
    #: privacy units); grouping on it then lets a person touch at most that many
    #: groups. Registration keeps each person's first values and drops the rest.
    max_groups_per_person: int | None = None

    @property
    def is_numeric(self) -> bool:
        """Whether sums and means apply."""
        return self.type in ("int", "float", "bool")

    @property
    def numeric_bounds(self) -> tuple[float, float] | None:
        """Bounds, with booleans read as 0/1."""
        return (0, 1) if self.type == "bool" else self.bounds

    @property
    def keys(self) -> tuple[Any, ...] | None:
        """Public group keys, if the column has any.

        Declared categories; both booleans; every integer of a narrow int range.
        """
        if self.type == "bool":
            return (False, True)
        if self.type == "int" and self.bounds is not None:
            lo, hi = int(self.bounds[0]), int(self.bounds[1])
            return tuple(range(lo, hi + 1)) if hi - lo < MAX_INT_KEYS else None
        return self.categories


@dataclass(frozen=True, slots=True)
class PrivacyUnit:
    """Whom the guarantee protects: one row, or all rows of one identifier."""

    identifier: str | None = None
    max_rows_per_person: int = 1

    @property
    def d_in(self) -> int:
        """Symmetric distance between neighbouring datasets (rows added or removed).

        With an identifier bounded to k rows (checked at registration), adding or
        removing one person changes at most k rows.
        """
        return self.max_rows_per_person


#: How a dataset accounts privacy: pure ε-DP (Laplace noise, budgets in ε) or
#: ρ-zero-concentrated DP (Gaussian noise, budgets in ρ).
DEFINITIONS = ("pure_dp", "zcdp")
#: The δ at which a zCDP dataset's ρ is also shown as (ε, δ), unless declared.
DEFAULT_EQUIVALENT_DELTA = 1e-6


@dataclass(frozen=True, slots=True)
class Schema:
    """A dataset's public schema."""

    columns: tuple[ColumnSpec, ...]
    privacy_unit: PrivacyUnit
    max_rows: int = DEFAULT_MAX_ROWS
    description: str = ""
    privacy_definition: str = "pure_dp"
    equivalent_delta: float = DEFAULT_EQUIVALENT_DELTA

    @property
    def zcdp(self) -> bool:
        """Whether budgets on this dataset are in ρ (zero-concentrated DP)."""
        return self.privacy_definition == "zcdp"

    def column(self, name: str) -> ColumnSpec | None:
        """The column called ``name``, or None."""
        for c in self.columns:
            if c.name == name:
                return c
        return None

    @property
    def names(self) -> list[str]:
        """Column names in declaration order."""
        return [c.name for c in self.columns]

    # --- serialisation -------------------------------------------------------------

    @classmethod
    def from_toml(cls, text: str) -> Schema:
        """Parse and check a schema TOML.

        Raises:
            SchemaError: with a message naming the offending key.
        """
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise SchemaError(f"schema is not valid TOML: {err}") from err
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Schema:
        """Build from the TOML/JSON structure (see the module docstring)."""
        known = {
            "description",
            "max_rows",
            "privacy_unit",
            "columns",
            "privacy_definition",
            "equivalent_delta",
        }
        extra = sorted(set(raw) - known)
        if extra:
            raise SchemaError(f"unknown schema key(s): {', '.join(extra)}")
        columns_raw = raw.get("columns")
        if not isinstance(columns_raw, dict) or not columns_raw:
            raise SchemaError("schema needs a [columns.NAME] table for each column")
        columns = tuple(_parse_column(name, spec) for name, spec in columns_raw.items())
        max_rows = raw.get("max_rows", DEFAULT_MAX_ROWS)
        if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1:
            raise SchemaError("max_rows must be a positive integer")
        unit = _parse_unit(raw.get("privacy_unit", "row"), {c.name: c for c in columns})
        for c in columns:
            if c.max_groups_per_person is None:
                continue
            if unit.identifier is None:
                raise SchemaError(
                    f"column {c.name!r}: max_groups_per_person needs a privacy unit that "
                    "identifies people (privacy_unit = { column = ..., max_rows_per_person = ... })"
                )
            if c.name == unit.identifier:
                raise SchemaError(f"column {c.name!r} is the privacy unit; it has no groups")
            if c.max_groups_per_person > unit.max_rows_per_person:
                raise SchemaError(
                    f"column {c.name!r}: max_groups_per_person={c.max_groups_per_person} cannot "
                    f"exceed max_rows_per_person={unit.max_rows_per_person} (one group per row)"
                )
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise SchemaError("description must be a string")
        definition = raw.get("privacy_definition", "pure_dp")
        if definition not in DEFINITIONS:
            raise SchemaError(
                f"privacy_definition must be one of {', '.join(DEFINITIONS)}, got {definition!r}"
            )
        equivalent = raw.get("equivalent_delta", DEFAULT_EQUIVALENT_DELTA)
        if "equivalent_delta" in raw and definition != "zcdp":
            raise SchemaError('equivalent_delta applies only to privacy_definition = "zcdp"')
        if (
            isinstance(equivalent, bool)
            or not isinstance(equivalent, (int, float))
            or not 0 < equivalent < 1
        ):
            raise SchemaError("equivalent_delta must be a number between 0 and 1, e.g. 1e-7")
        return cls(columns, unit, max_rows, description, definition, float(equivalent))

    def to_dict(self) -> dict[str, Any]:
        """The structure `from_dict` reads (stored in the catalog as JSON)."""
        cols: dict[str, Any] = {}
        for c in self.columns:
            spec: dict[str, Any] = {"type": c.type}
            if c.bounds is not None:
                spec["bounds"] = list(c.bounds)
            if c.categories is not None:
                spec["categories"] = list(c.categories)
            if c.nullable:
                spec["nullable"] = True
            if c.max_keys is not None:
                spec["max_keys"] = c.max_keys
            if c.max_groups_per_person is not None:
                spec["max_groups_per_person"] = c.max_groups_per_person
            if c.description:
                spec["description"] = c.description
            cols[c.name] = spec
        unit: Any = (
            "row"
            if self.privacy_unit.identifier is None
            else {
                "column": self.privacy_unit.identifier,
                "max_rows_per_person": self.privacy_unit.max_rows_per_person,
            }
        )
        out: dict[str, Any] = {
            "description": self.description,
            "max_rows": self.max_rows,
            "privacy_unit": unit,
            "columns": cols,
        }
        if self.zcdp:
            out["privacy_definition"] = self.privacy_definition
            out["equivalent_delta"] = self.equivalent_delta
        return out

    def to_json(self) -> str:
        """JSON in declaration order (column order is part of the schema)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Schema:
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))


def _parse_column(name: str, spec: Any) -> ColumnSpec:
    if not name or not set(name) <= _NAME_OK or name[0].isdigit() or name.startswith("__"):
        raise SchemaError(
            f"column name {name!r} must be letters, digits and _ (not first digit, and not "
            "starting with __, which Enclave reserves)"
        )
    if not isinstance(spec, dict):
        raise SchemaError(f"column {name!r}: expected a table with at least `type`")
    known = {
        "type",
        "bounds",
        "categories",
        "nullable",
        "description",
        "max_keys",
        "max_groups_per_person",
    }
    extra = sorted(set(spec) - known)
    if extra:
        raise SchemaError(f"column {name!r}: unknown key(s) {', '.join(extra)}")
    ctype = spec.get("type")
    if ctype not in COLUMN_TYPES:
        raise SchemaError(f"column {name!r}: type must be one of {', '.join(COLUMN_TYPES)}")
    bounds = spec.get("bounds")
    categories = spec.get("categories")
    if ctype in ("int", "float"):
        if bounds is None:
            raise SchemaError(f"column {name!r}: numeric columns need public bounds = [lo, hi]")
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        ):
            raise SchemaError(f"column {name!r}: bounds must be two numbers [lo, hi]")
        lo, hi = bounds
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            raise SchemaError(f"column {name!r}: bounds must be finite with lo < hi, got {bounds}")
        if ctype == "int" and not (isinstance(lo, int) and isinstance(hi, int)):
            raise SchemaError(f"column {name!r}: bounds of an int column must be integers")
        bounds = (lo, hi) if ctype == "int" else (float(lo), float(hi))
    elif bounds is not None:
        raise SchemaError(f"column {name!r}: bounds apply only to int and float columns")
    if ctype == "category":
        if (
            not isinstance(categories, list)
            or not categories
            or not all(isinstance(v, str) for v in categories)
            or len(set(categories)) != len(categories)
        ):
            raise SchemaError(
                f"column {name!r}: category columns need public categories = [...] "
                "(distinct strings)"
            )
        categories = tuple(categories)
    elif categories is not None:
        raise SchemaError(f"column {name!r}: categories apply only to category columns")
    nullable = spec.get("nullable", False)
    if not isinstance(nullable, bool):
        raise SchemaError(f"column {name!r}: nullable must be true or false")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise SchemaError(f"column {name!r}: description must be a string")
    max_groups = spec.get("max_groups_per_person")
    if max_groups is not None:
        if ctype == "float":
            raise SchemaError(
                f"column {name!r}: max_groups_per_person applies to columns one can group on, "
                "not to float columns"
            )
        if not isinstance(max_groups, int) or isinstance(max_groups, bool) or max_groups < 1:
            raise SchemaError(f"column {name!r}: max_groups_per_person must be a positive integer")
    max_keys = spec.get("max_keys")
    if max_keys is not None:
        if ctype not in ("string", "int"):
            raise SchemaError(f"column {name!r}: max_keys applies to string and int columns")
        if not isinstance(max_keys, int) or isinstance(max_keys, bool) or max_keys < 1:
            raise SchemaError(f"column {name!r}: max_keys must be a positive integer")
    return ColumnSpec(name, ctype, bounds, categories, nullable, description, max_keys, max_groups)


def _parse_unit(raw: Any, columns: dict[str, ColumnSpec]) -> PrivacyUnit:
    if raw == "row":
        return PrivacyUnit()
    if not isinstance(raw, dict) or set(raw) - {"column", "max_rows_per_person"}:
        raise SchemaError(
            'privacy_unit must be "row" or { column = "ID", max_rows_per_person = K }'
        )
    ident = raw.get("column")
    k = raw.get("max_rows_per_person")
    if not isinstance(ident, str) or ident not in columns:
        raise SchemaError(f"privacy_unit.column {ident!r} is not a declared column")
    if columns[ident].type not in ("int", "string"):
        raise SchemaError(f"privacy_unit.column {ident!r} must be an int or string column")
    if columns[ident].nullable:
        raise SchemaError(f"privacy_unit.column {ident!r} cannot be nullable")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= _MAX_ROWS_PER_PERSON:
        raise SchemaError(
            "privacy_unit.max_rows_per_person must be a positive integer, at most "
            f"{_MAX_ROWS_PER_PERSON:,}"
        )
    return PrivacyUnit(str(ident), k)


@dataclass(frozen=True, slots=True)
class DatasetHandle:
    """What the host knows of a registered dataset: its public schema and its file.

    ``clamps`` are the (column, lower, upper) a provider's narrower bounds add:
    evaluation clamps those columns as it reads them, so the data obey the
    bounds that ``schema`` (the researcher's view) declares.
    """

    name: str
    schema: Schema
    path: Path
    clamps: tuple[tuple[str, int | float, int | float], ...] = ()
    #: The catalog's version of the data at ``path`` (recorded with each charge).
    version: int | None = None

    def restricted(
        self,
        allowed_columns: tuple[str, ...] | None,
        bounds: tuple[tuple[str, int | float, int | float], ...] | None,
    ) -> DatasetHandle:
        """The dataset as researchers see it under a provider's policy.

        Hidden columns leave the schema (plans cannot name them, the catalog
        does not list them, evaluation never reads them); narrowed columns take
        their new bounds. The privacy unit keeps its definition: a hidden
        identifier still bounds each person's rows, which registration enforced.

        Raises:
            SchemaError: a column the schema lacks, bounds on a non-numeric
                column, bounds that are not inside the declared ones, or
                fractional bounds on an int column.
        """
        if allowed_columns is None and bounds is None:
            return self  # no column rules: the dataset as registered
        schema = self.schema
        known = set(schema.names)
        named = [*(allowed_columns or ()), *(name for name, _lo, _hi in bounds or ())]
        unknown = sorted({n for n in named if n not in known})
        if unknown:
            raise SchemaError(
                f"dataset {self.name!r} has no column(s) {', '.join(map(repr, unknown))}; "
                f"columns are: {', '.join(schema.names)}"
            )
        narrowed: dict[str, tuple[int | float, int | float]] = {}
        for name, lo, hi in bounds or ():
            spec = schema.column(name)
            assert spec is not None
            if spec.bounds is None:
                raise SchemaError(
                    f"column {name!r} is {spec.type}: bounds apply only to int and float columns"
                )
            if spec.type == "int" and not (float(lo).is_integer() and float(hi).is_integer()):
                raise SchemaError(f"column {name!r} is int: its bounds must be whole numbers")
            declared_lo, declared_hi = spec.bounds
            if lo < declared_lo or hi > declared_hi:
                raise SchemaError(
                    f"bounds [{lo}, {hi}] for {name!r} are not inside its declared bounds "
                    f"[{declared_lo}, {declared_hi}]: a policy can only narrow them"
                )
            narrowed[name] = (int(lo), int(hi)) if spec.type == "int" else (float(lo), float(hi))
        if allowed_columns is not None and not allowed_columns:
            raise SchemaError("allowed_columns must name at least one column")
        visible = set(allowed_columns) if allowed_columns is not None else known
        columns = tuple(
            dataclasses.replace(c, bounds=narrowed[c.name]) if c.name in narrowed else c
            for c in schema.columns
            if c.name in visible
        )
        clamps = tuple(
            (name, lo, hi) for name, (lo, hi) in sorted(narrowed.items()) if name in visible
        )
        return dataclasses.replace(
            self, schema=dataclasses.replace(schema, columns=columns), clamps=clamps
        )


# --- data validation (provider side) -------------------------------------------------


def conform(frame: Any, schema: Schema) -> Any:
    """Check a Polars DataFrame against ``schema``; return it cast to the stored types.

    The in-memory form of `Conformer`, for data that is already loaded.

    Raises:
        DataMismatch: naming the column, the problem, and (for the provider) the
            first offending rows.
    """
    checker = Conformer(schema)
    checker.observe(frame)
    checker.finish()
    return checker.typed(frame)


class Conformer:
    """Checks data against a schema one batch at a time, then converts it.

    Registration reads a provider's file in batches of a few MB twice: once
    through `observe` (which keeps only counts, the first offending rows of each
    problem and capped sets of distinct values), then, after `finish` passed,
    through `typed` (and `PersonLimits`) on the way to Parquet. Memory is then
    bounded by a batch, whatever the file's size. (Polars' streaming engine, tried
    first, materialised these
    multi-check aggregations: its peak grew with the file.)
    """

    #: Rows shown per problem in a refusal.
    EXAMPLES = 5

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.rows = 0
        self._checks: dict[tuple[str, Any], _ColumnCheck] = {}
        self._counts: dict[str, int] = {}
        self._examples: dict[str, list[tuple[int, Any]]] = {}
        self._keys: dict[str, set[Any]] = {
            s.name: set() for s in schema.columns if s.max_keys is not None
        }

    def _columns(self, batch: Any) -> list[_ColumnCheck]:
        """The checks for this batch's column types (a JSON file's may vary by batch)."""
        missing = [n for n in self.schema.names if n not in batch.schema]
        if missing:
            raise DataMismatch(f"column(s) missing from the data: {', '.join(missing)}")
        undeclared = [n for n in batch.columns if self.schema.column(n) is None]
        if undeclared:
            raise DataMismatch(
                f"column(s) in the data but not in the schema: {', '.join(undeclared)} "
                "(declare them, or drop them before registering)"
            )
        checks = []
        for spec in self.schema.columns:
            key = (spec.name, batch.schema[spec.name])
            if key not in self._checks:
                self._checks[key] = _ColumnCheck(spec, key[1])
            checks.append(self._checks[key])
        return checks

    def observe(self, batch: Any) -> None:
        """Count this batch's problems; rows are numbered after the earlier batches'."""
        checks = self._columns(batch)
        conditions = [c for check in checks for c in check.conditions()]
        if conditions:
            counts = batch.select(cond.sum().alias(key) for key, cond, _ in conditions).row(
                0, named=True
            )
            for key, cond, shown in conditions:
                found = int(counts[key] or 0)
                if not found:
                    continue
                self._counts[key] = self._counts.get(key, 0) + found
                kept = self._examples.setdefault(key, [])
                if len(kept) < self.EXAMPLES:
                    rows = (
                        batch.with_row_index("__enclave_row", offset=self.rows)
                        .filter(cond)
                        .select("__enclave_row", shown.alias("__enclave_value"))
                        .head(self.EXAMPLES - len(kept))
                    )
                    kept.extend(rows.iter_rows())
        by_name = {check.spec.name: check for check in checks}
        for name, seen in self._keys.items():
            spec = by_name[name].spec
            assert spec.max_keys is not None
            if len(seen) <= spec.max_keys:  # beyond, the refusal is certain
                seen.update(batch.select(by_name[name].typed.unique()).to_series().to_list())
        self.rows += batch.height

    def finish(self) -> None:
        """Refuse the data if any batch had a problem.

        Raises:
            DataMismatch: every problem found, each with its first rows.
        """
        if self.rows > self.schema.max_rows:
            raise DataMismatch(
                f"the data has {self.rows} rows, more than max_rows={self.schema.max_rows}"
            )
        problems: list[str] = []
        for spec in self.schema.columns:
            problems += _ColumnCheck.problems(spec, self._counts, self._examples)
            seen = self._keys.get(spec.name)
            if spec.max_keys is not None and seen is not None and len(seen) > spec.max_keys:
                problems.append(
                    f"column {spec.name!r}: more than max_keys={spec.max_keys} distinct values"
                )
        if problems:
            raise DataMismatch("the data does not match the schema:\n  " + "\n  ".join(problems))

    def typed(self, batch: Any) -> Any:
        """A checked batch cast to the stored types, in schema order."""
        return batch.select(check.typed for check in self._columns(batch))


class _ColumnCheck:
    """One column's conversion to its declared type, and the checks of its values.

    Every check is a boolean expression over the source row; a batch's checks
    are counted in one aggregation.
    """

    _TARGET = {"int": "Int64", "float": "Float64", "bool": "Boolean"}

    def __init__(self, spec: ColumnSpec, dtype: Any) -> None:
        import polars as pl

        self.spec = spec
        name = spec.name
        source = pl.col(name)
        #: (check, condition, shown expression): the type checks come first and,
        #: when one fails, the column's other problems are not reported.
        self.type_checks: list[tuple[str, Any, Any]] = []
        if spec.type == "bool" and dtype == pl.String:
            # CSV text: accept the usual spellings, strictly.
            typed = source.str.to_lowercase().replace_strict(
                _BOOL_TEXT, default=None, return_dtype=pl.Boolean
            )
            self.type_checks.append(("type", typed.is_null() & source.is_not_null(), source))
        elif spec.type in self._TARGET:
            typed = source.cast(getattr(pl, self._TARGET[spec.type]), strict=False)
            self.type_checks.append(("type", typed.is_null() & source.is_not_null(), source))
            if dtype.is_numeric() and spec.type != "float":
                # Typed input (Parquet): 2.5 -> int or 2 -> bool would cast silently.
                lossy = (source.cast(pl.Float64) != typed.cast(pl.Float64)).fill_null(False)
                self.type_checks.append(("lossy", lossy, source))
        else:
            typed = source.cast(pl.String)
        self.typed = typed.alias(name)
        value = self.typed
        self.value_checks: list[tuple[str, Any]] = []
        if not spec.nullable:
            self.value_checks.append(("nulls", value.is_null()))
        if spec.type == "float":
            self.value_checks.append(("nan", value.is_nan().fill_null(False)))
        if spec.bounds is not None:
            lo, hi = spec.bounds
            outside = (value < lo) | (value > hi)
            if spec.type == "float":
                outside = outside & value.is_not_nan()  # NaN is reported on its own
            self.value_checks.append(("bounds", outside.fill_null(False)))
        if spec.categories is not None:
            self.value_checks.append(
                ("categories", value.is_not_null() & ~value.is_in(list(spec.categories)))
            )

    @staticmethod
    def key(column: str, check: str) -> str:
        return f"{column}\x00{check}"

    def conditions(self) -> list[tuple[str, Any, Any]]:
        """(count key, condition, shown expression) for every check of the column."""
        name = self.spec.name
        out = [(self.key(name, k), cond, shown) for k, cond, shown in self.type_checks]
        out += [(self.key(name, k), cond, self.typed) for k, cond in self.value_checks]
        return out

    @staticmethod
    def problems(
        spec: ColumnSpec,
        counts: dict[str, int],
        examples: dict[str, list[tuple[int, Any]]],
    ) -> list[str]:
        """The refusal's lines for one column, from every batch's counts."""
        where = f"column {spec.name!r}"

        def count(check: str) -> int:
            return counts.get(_ColumnCheck.key(spec.name, check), 0)

        def rows(check: str) -> str:
            shown = examples.get(_ColumnCheck.key(spec.name, check), [])
            items = [f"row {r + 1}: {v!r}" for r, v in shown]
            more = count(check) - len(shown)
            return "; ".join(items) + (f" (and {more} more)" if more > 0 else "")

        if count("type"):
            kind = "bool (true/false/1/0/yes/no)" if spec.type == "bool" else spec.type
            # Rows numbered as a spreadsheet shows them (header excluded).
            return [f"{where}: values are not {kind}: {rows('type')}"]
        if count("lossy"):
            return [
                f"{where}: values cannot be stored as {spec.type} without changing them: "
                f"{rows('lossy')}"
            ]
        found = []
        if count("nulls"):
            found.append(
                f"{where}: {count('nulls')} null value(s) but the column is not nullable: "
                f"{rows('nulls')}"
            )
        if count("nan"):
            found.append(f"{where}: NaN values: {rows('nan')}")
        if count("bounds") and spec.bounds is not None:
            lo, hi = spec.bounds
            found.append(
                f"{where}: {count('bounds')} value(s) outside bounds [{lo}, {hi}]: {rows('bounds')}"
            )
        if count("categories"):
            found.append(
                f"{where}: {count('categories')} value(s) not among the declared categories: "
                f"{rows('categories')}"
            )
        return found


@dataclass(frozen=True, slots=True)
class Truncation:
    """What registration dropped to make each person's contribution fit the schema.

    For the provider only: it is computed from the data.
    """

    rows_dropped: int = 0
    persons_truncated: int = 0
    #: Rows the provider's cleaning choices dropped before the check (enclave's
    #: `Cleaning.drop_invalid_rows`), counted apart from the truncation.
    rows_cleaned: int = 0


def truncate_contributions(frame: Any, schema: Schema) -> tuple[Any, Truncation]:
    """Keep each person's first ``max_rows_per_person`` rows and first groups.

    The stored data then obey the privacy unit's bounds, which the privacy
    analysis assumes. Truncating is a stable transformation: adding or removing
    one person changes at most ``max_rows_per_person`` rows of the result, so
    it is sound whichever rows are kept; keeping the first ones in file order
    makes it reproducible. For a column with ``max_groups_per_person = G``,
    each person keeps the rows holding the first G distinct values they show
    (null counts as a value).
    """
    import polars as pl

    ident = schema.privacy_unit.identifier
    if ident is None:
        return frame, Truncation()
    dropped = _dropped_rows(frame.with_row_index("__row"), schema)
    if dropped.height == 0:
        return frame, Truncation()
    kept = (
        frame.with_row_index("__row")
        .filter(~pl.col("__row").is_in(dropped.get_column("__row").implode()))
        .drop("__row")
    )
    return kept, Truncation(dropped.height, dropped.get_column(ident).n_unique())


def _dropped_rows(frame: Any, schema: Schema) -> Any:
    """The rows (``__row`` and the person) that `truncate_contributions` drops.

    ``frame`` holds every row of the persons it has, in file order, numbered
    in ``__row``; only the person column and those with
    ``max_groups_per_person`` are read.
    """
    import polars as pl

    unit = schema.privacy_unit
    ident = unit.identifier
    assert ident is not None
    grouped = [s.name for s in schema.columns if s.max_groups_per_person is not None]
    # Each condition looks only at one person's own rows, so together they are
    # still a per-person (stable) transformation.
    marked = frame.select("__row", ident, *grouped).with_columns(
        (pl.int_range(pl.len()).over(ident) < unit.max_rows_per_person).alias("__keep")
    )
    for spec in schema.columns:
        if spec.max_groups_per_person is None:
            continue
        # Rank each person's distinct values by where they first appear.
        marked = marked.with_columns(pl.col("__row").min().over(ident, spec.name).alias("__first"))
        within = pl.col("__first").rank("dense").over(ident) <= spec.max_groups_per_person
        marked = marked.with_columns(pl.col("__keep") & within).drop("__first")
    return marked.filter(~pl.col("__keep")).select("__row", ident)


class PersonLimits:
    """`truncate_contributions` for a file read in batches, in bounded memory.

    Truncating needs all of a person's rows together, and a person's rows
    may be anywhere in the file. So the batches' person column (and the
    grouped ones), with each row's number, are spilled to ``partitions``
    files by a hash of the person: each file then holds every row of its
    persons, in file order, and is truncated on its own, in memory, exactly as
    the whole data would be. The hash only spreads persons over files; it
    decides nothing. What is kept is the (sorted) numbers of the rows to drop.
    """

    def __init__(self, schema: Schema, folder: Path, partitions: int) -> None:
        self._schema = schema
        unit = schema.privacy_unit
        assert unit.identifier is not None
        self._columns = [unit.identifier] + [
            s.name for s in schema.columns if s.max_groups_per_person is not None
        ]
        self._folder = folder
        self._partitions = max(1, partitions)
        self._writers: dict[int, Any] = {}
        self._rows = 0
        self._dropped: Any = None
        self.truncation = Truncation()

    def add(self, typed: Any) -> None:
        """Spill one batch (already cast to the stored types) to the partition files."""
        import polars as pl
        import pyarrow as pa

        part = typed.select(self._columns).with_columns(
            pl.int_range(self._rows, self._rows + typed.height, dtype=pl.UInt64).alias("__row"),
            (pl.col(self._columns[0]).hash(seed=0) % self._partitions).alias("__part"),
        )
        self._rows += typed.height
        for (index,), rows in part.partition_by("__part", as_dict=True).items():
            table = rows.drop("__part").to_arrow(compat_level=pl.CompatLevel.oldest())
            writer = self._writers.get(index)
            if writer is None:
                sink = pa.OSFile(str(self._folder / f"persons-{index}.arrow"), "wb")
                writer = self._writers[index] = (sink, pa.ipc.new_stream(sink, table.schema))
            writer[1].write_table(table)

    def finish(self) -> None:
        """Truncate each partition; afterwards `drop` answers and the files are gone."""
        import numpy as np
        import polars as pl
        import pyarrow as pa

        ident = self._columns[0]
        found: list[Any] = []
        rows = persons = 0
        for index, (sink, writer) in sorted(self._writers.items()):
            writer.close()
            sink.close()
            path = self._folder / f"persons-{index}.arrow"
            with pa.memory_map(str(path)) as source:
                frame = pl.from_arrow(pa.ipc.open_stream(source).read_all())
            path.unlink()
            assert isinstance(frame, pl.DataFrame)
            dropped = _dropped_rows(frame, self._schema)
            rows += dropped.height
            persons += dropped.get_column(ident).n_unique()  # partitions share no person
            found.append(dropped.get_column("__row").to_numpy())
        self._writers = {}
        self._dropped = np.sort(np.concatenate(found)) if found else np.empty(0, np.uint64)
        self.truncation = Truncation(rows, persons)

    def drop(self, typed: Any, offset: int) -> Any:
        """The batch starting at row ``offset`` without the rows `finish` found to drop."""
        import numpy as np
        import polars as pl

        lo, hi = np.searchsorted(self._dropped, [offset, offset + typed.height])
        if lo == hi:
            return typed
        mask = np.ones(typed.height, dtype=bool)
        mask[self._dropped[lo:hi] - offset] = False
        return typed.filter(pl.Series(mask))

    def close(self) -> None:
        """Remove any partition file left by a registration that failed."""
        for sink, _writer in self._writers.values():
            sink.close()
        for path in self._folder.glob("persons-*.arrow"):
            path.unlink(missing_ok=True)


_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
