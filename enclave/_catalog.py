"""The dataset catalog: registration (data checked against its schema) and lookup.

Registered data is converted to Parquet under ``DATA_DIR/datasets/NAME/`` and
written to a temporary name first, then renamed, so that a failed registration
never leaves a half-written file behind a catalog row. The schema (public
metadata) is stored in the database as JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

import budget
from jobs import (
    DataMismatch,
    DatasetHandle,
    Schema,
    Truncation,
    UnknownDataset,
    conform,
    truncate_contributions,
)
from jobs._service import TRIMMER

from ._errors import AlreadyExists, InvalidArgument, UploadCorrupt
from ._quality import Cleaning, clean

log = logging.getLogger(__name__)

metadata = MetaData()

datasets_table = Table(
    "datasets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("schema_json", Text, nullable=False),
    Column("file", String(500), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
FORMATS = ("csv", "parquet", "ndjson")
#: Looked up at every release: built once.
_BY_NAME = select(datasets_table).where(datasets_table.c.name == bindparam("b_name"))


@dataclass(frozen=True, slots=True)
class DatasetEntry:
    """A catalog row: public metadata plus where the file is."""

    name: str
    owner: str
    schema: Schema
    path: Path
    created_at: dt.datetime


def read_table(path: Path, fmt: str) -> Any:
    """Read a provider's file into a Polars DataFrame, every CSV column as text.

    CSV columns are read as strings so that `jobs.conform` does the typing and can
    name the rows that do not parse, instead of Polars guessing a type.

    Raises:
        DataMismatch: unreadable file (message for the provider).
    """
    import polars as pl

    try:
        if fmt == "csv":
            return pl.read_csv(path, infer_schema=False, encoding="utf8")
        if fmt == "parquet":
            return pl.read_parquet(path)
        if fmt == "ndjson":
            return pl.read_ndjson(path)
    except Exception as err:  # polars raises many types for unreadable input
        found = _diagnose_csv(path) if fmt == "csv" else None
        raise DataMismatch(f"could not read the {fmt} file: {found or err}") from err
    raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _diagnose_csv(path: Path) -> str | None:
    """The first line that makes a CSV file unreadable, said plainly (or None).

    Run only when Polars refused the file: its messages name its own options
    ("truncate_ragged_lines"), not the provider's line. Two streaming passes,
    so a large file is checked in bounded memory: the encoding line by line,
    then the field counts with Python's CSV reader (quoted values may span
    lines).
    """
    import codecs
    import csv

    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as err:
                return (
                    f"line {number} is not valid UTF-8 (byte {raw[err.start]:#04x} at column "
                    f"{err.start + 1}); save the file as UTF-8 and upload it again"
                )
    with open(path, encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header: int | None = None
        try:
            for row in reader:
                if not row:
                    continue
                if header is None:
                    header = len(row)
                elif len(row) != header:
                    return (
                        f"line {reader.line_num} has {len(row)} field(s) but the header has "
                        f"{header}; every line needs one value per column (empty for a "
                        "missing value)"
                    )
        except csv.Error as err:
            return f"line {reader.line_num}: {err}"
    return None


class Catalog:
    """Datasets registered in this enclave."""

    def __init__(self, engine: Engine, root: Path) -> None:
        self._engine = engine
        self._root = root

    def create_tables(self) -> None:
        """Create the table and the data folder if missing."""
        budget.upgrade_schema(self._engine, "enclave")
        self._root.mkdir(parents=True, exist_ok=True)

    def register(
        self,
        name: str,
        owner: str,
        schema_toml: str,
        source: Path,
        fmt: str,
        cleaning: Cleaning | None = None,
    ) -> tuple[DatasetEntry, Truncation]:
        """Check ``source`` against the schema and store it as Parquet.

        Each person's rows beyond the privacy unit's bounds are dropped first
        (`jobs.truncate_contributions`); what was dropped is returned for the
        provider.

        Raises:
            InvalidArgument: bad name or format.
            SchemaError: bad schema.
            DataMismatch: data that does not match the schema (provider-only details).
            AlreadyExists: the name is taken.
        """
        check_name(name)
        if fmt not in FORMATS:
            raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        schema = Schema.from_toml(schema_toml)
        if self.get(name) is not None:
            raise AlreadyExists(f"dataset {name!r} is already registered")
        try:
            return self._store(name, owner, schema, source, fmt, cleaning)
        finally:
            TRIMMER.poke()  # the upload's working set, once freed, goes back to the OS

    def _store(
        self,
        name: str,
        owner: str,
        schema: Schema,
        source: Path,
        fmt: str,
        cleaning: Cleaning | None,
    ) -> tuple[DatasetEntry, Truncation]:
        frame = read_table(source, fmt)
        cleaned = 0
        if cleaning:
            frame, cleaned = clean(frame, schema, cleaning)
        frame, truncation = truncate_contributions(conform(frame, schema), schema)
        truncation = dataclasses.replace(truncation, rows_cleaned=cleaned)
        folder = self._root / name
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{uuid.uuid4().hex}.parquet"
        tmp = folder / f".{final.name}.tmp"
        try:
            frame.write_parquet(tmp, statistics=False)
            os.replace(tmp, final)
            now = dt.datetime.now(dt.UTC)
            with self._engine.begin() as conn:
                conn.execute(
                    insert(datasets_table).values(
                        name=name,
                        owner=owner,
                        schema_json=schema.to_json(),
                        file=str(final.relative_to(self._root)),
                        created_at=now,
                    )
                )
        except IntegrityError:
            final.unlink(missing_ok=True)
            raise AlreadyExists(f"dataset {name!r} is already registered") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            raise
        log.info("dataset %s registered by %s (%d columns)", name, owner, len(schema.columns))
        return DatasetEntry(name, owner, schema, final, now), truncation

    def delete(self, name: str) -> None:
        """Unregister ``name`` and purge its data files. The ledger is not touched.

        The catalog row goes first (in its own transaction), so the name stops
        resolving before the files disappear.
        """
        from sqlalchemy import delete

        check_name(name)
        with self._engine.begin() as conn:
            conn.execute(delete(datasets_table).where(datasets_table.c.name == name))
        shutil.rmtree(self._root / name, ignore_errors=True)

    def get(self, name: str) -> DatasetEntry | None:
        """The dataset called ``name``, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(_BY_NAME, {"b_name": name}).mappings().first()
        return None if row is None else self._entry(row)

    def list(self) -> list[DatasetEntry]:
        """All datasets by name."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(datasets_table).order_by(datasets_table.c.name)).mappings()
            return [self._entry(r) for r in rows]

    def resolve(self, name: str) -> DatasetHandle:
        """For the job service: schema and file of a dataset.

        Raises:
            UnknownDataset
        """
        entry = self.get(name)
        if entry is None:
            raise UnknownDataset(f"no dataset called {name!r}")
        return DatasetHandle(entry.name, entry.schema, entry.path)

    def _entry(self, row: Any) -> DatasetEntry:
        return DatasetEntry(
            name=row["name"],
            owner=row["owner"],
            schema=Schema.from_json(row["schema_json"]),
            path=self._root / row["file"],
            created_at=row["created_at"],
        )


def check_name(name: str) -> None:
    """Refuse a dataset name that is not 1-64 of a-z 0-9 _ starting with a letter.

    Raises:
        InvalidArgument: saying what a name may be.
    """
    if not _NAME.match(name):
        raise InvalidArgument(
            f"dataset name {name!r} must be 1-64 characters of a-z 0-9 _ starting with a letter"
        )


#: Most bytes one streamed upload may carry (a file system's worth of guard).
MAX_UPLOAD_BYTES = 64 * 1024**3


def receive_upload(
    chunks: Iterator[bytes], folder: Path, suffix: str, size: int
) -> tuple[Path, str]:
    """Stream ``chunks`` to a private file in ``folder``; the file and its hex SHA-256.

    Memory stays bounded by one chunk whatever the file's size. The caller
    checks the digest and deletes the file when done; if anything goes wrong
    here, the partial file is deleted before raising.

    Raises:
        UploadCorrupt: more bytes than announced, or than `MAX_UPLOAD_BYTES`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"upload-{uuid.uuid4().hex}.{suffix}"
    digest = hashlib.sha256()
    received = 0
    limit = size if size > 0 else MAX_UPLOAD_BYTES
    try:
        with open(path, "wb") as fh:
            for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise UploadCorrupt(
                        f"the upload sent more than the {limit:,} bytes it announced; nothing "
                        "was registered"
                    )
                digest.update(chunk)
                fh.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size > 0 and received != size:
        path.unlink(missing_ok=True)
        raise UploadCorrupt(
            f"the upload announced {size:,} bytes but sent {received:,}; nothing was registered: "
            "upload again"
        )
    return path, digest.hexdigest()


def copy_upload(data: bytes, folder: Path, suffix: str) -> Path:
    """Write uploaded bytes to a private temporary file inside the data dir."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"upload-{uuid.uuid4().hex}.{suffix}"
    with open(path, "wb") as fh:
        fh.write(data)
    return path
