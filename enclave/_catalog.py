"""The dataset catalog: registration (data checked against its schema) and lookup.

Registered data is converted to Parquet under ``DATA_DIR/datasets/NAME/`` and
written to a temporary name first, then renamed, so that a failed registration
never leaves a half-written file behind a catalog row. The schema (public
metadata) is stored in the database as JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

import budget
from jobs import (
    Conformer,
    DataMismatch,
    DatasetHandle,
    PersonLimits,
    Schema,
    Truncation,
    UnknownDataset,
)
from jobs._service import TRIMMER

from ._errors import AlreadyExists, InvalidArgument, NotFound, UploadCorrupt, VersionConflict
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
    # The current version (see dataset_versions); 1 for datasets from before versions.
    Column("version", Integer, nullable=False, server_default="1"),
)

#: Every version a dataset name has had, kept when the dataset is deleted so that
#: a name registered again continues the numbering its ledger entries use.
dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("dataset", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    # Relative to the data folder; NULL once the file was purged.
    Column("file", String(500), nullable=True),
    Column("uploaded_by", String(200), nullable=False),
    Column("uploaded_at", DateTime(timezone=True), nullable=False),
    # Whether this version started a new budget period (a provider's choice).
    Column("new_period", Boolean, nullable=False),
    Column("superseded_at", DateTime(timezone=True), nullable=True),
    # The uploaded file's SHA-256 (NULL: registered in one message, or before versions).
    Column("sha256", String(64), nullable=True),
    PrimaryKeyConstraint("dataset", "version", name="pk_dataset_versions"),
)

#: How long a superseded version's file is kept after a new version replaces it,
#: so that releases already priced on it (a job lives at most `Limits.wall_seconds`)
#: finish on the data they were charged for.
SUPERSEDED_GRACE = dt.timedelta(hours=1)

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
    version: int = 1


#: Bytes of the provider's file parsed at a time at registration.
#: (Measured on a 530 MB CSV: 4 MB batches parse as fast as 16 MB ones, with a
#: working set of 70 MB instead of 170.)
BATCH_BYTES = 4 * 1024**2
#: Rows per Parquet row group of a registered file (Polars' own default).
ROW_GROUP_ROWS = 512**2
#: Bytes of file per partition of the person column (see `jobs.PersonLimits`):
#: truncating a partition takes about ten times its share of the file.
PERSON_PARTITION_BYTES = 16 * 1024**2
#: At most this many partition files (open at once while they are written).
MAX_PERSON_PARTITIONS = 512


def read_batches(path: Path, fmt: str, batch_bytes: int | None = None) -> Iterator[Any]:
    """A provider's file as Polars DataFrames of about `BATCH_BYTES` each (CSV as text).

    At least one frame, possibly empty, so that a file of headers only is
    still checked. CSV and NDJSON are cut at record boundaries (for CSV, a
    newline outside quotes: RFC 4180 doubles quotes inside quoted values, so
    an even count of quotes before a newline means it ends a record); each
    batch is parsed by Polars. NDJSON is read twice: once to settle each key's
    type over the whole file, as a whole-file read would (a person id written
    ``7`` in one batch and ``7.5`` in another must not become two persons),
    then with those types, every key in every batch. Parquet is read a record
    batch at a time.

    Raises:
        DataMismatch: an unreadable file, from the first batch that fails.
    """
    import polars as pl

    if fmt not in FORMATS:
        raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    size = batch_bytes or BATCH_BYTES
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with pq.ParquetFile(path) as parquet:
                empty = True
                for record_batch in parquet.iter_batches(batch_size=65_536):
                    empty = False
                    yield pl.from_arrow(record_batch)
                if empty:
                    yield pl.from_arrow(parquet.schema_arrow.empty_table())
        elif fmt == "csv":
            with open(path, "rb") as fh:
                header = _csv_header(fh)
                produced = False
                for block in _blocks(fh, size, csv=True):
                    yield pl.read_csv(header + block, infer_schema=False, encoding="utf8")
                    produced = True
                if not produced:
                    yield pl.read_csv(header, infer_schema=False, encoding="utf8")
        else:
            with open(path, "rb") as fh:
                schemas = [
                    pl.read_ndjson(block, infer_schema_length=None).schema
                    for block in _blocks(fh, size, csv=False)
                ]
            if not schemas:
                yield pl.DataFrame()
                return
            merged = pl.concat(
                [pl.DataFrame(schema=schema) for schema in schemas], how="diagonal_relaxed"
            ).schema
            with open(path, "rb") as fh:
                for block in _blocks(fh, size, csv=False):
                    yield pl.read_ndjson(block, schema=merged)
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        raise unreadable(path, fmt, err) from err


#: The longest CSV header a provider's file may have.
MAX_HEADER_BYTES = 1024**2
#: The longest CSV record: longer, it is a quote that never closes (refused).
MAX_RECORD_BYTES = 16 * 1024**2


def _csv_header(fh: BinaryIO) -> bytes:
    """The first record of a CSV file (its header), which may span lines if quoted.

    Raises:
        DataMismatch: line endings a CSV reader cannot cut (CR only), or a header
            longer than `MAX_HEADER_BYTES` (not a CSV file, or no line ends).
    """
    start = fh.read(64 * 1024)
    if b"\r" in start and b"\n" not in start:
        raise DataMismatch(
            "could not read the csv file: its lines end with CR alone (old Mac OS, or "
            'Excel\'s "CSV (Macintosh)"): save it as "CSV UTF-8" (lines ending with LF '
            "or CRLF) and upload again"
        )
    fh.seek(0)
    record = fh.readline(MAX_HEADER_BYTES + 1)
    while record.count(b'"') % 2 and len(record) <= MAX_HEADER_BYTES:
        more = fh.readline(MAX_HEADER_BYTES + 1)
        if not more:
            break
        record += more
    if len(record) > MAX_HEADER_BYTES:
        raise DataMismatch(
            f"could not read the csv file: its first line (the header) is longer than "
            f"{MAX_HEADER_BYTES:,} bytes: is it a CSV file with one record per line?"
        )
    return record


def _blocks(fh: BinaryIO, size: int, *, csv: bool) -> Iterator[bytes]:
    """The rest of ``fh`` in blocks of about ``size`` bytes, each ending at a record's end.

    Raises:
        DataMismatch: a CSV record longer than `MAX_RECORD_BYTES` (an unmatched
            double quote), naming the line where it starts.
    """
    pending = b""
    lines = 1 if csv else 0  # lines before ``pending`` (the header, for CSV)
    while True:
        data = fh.read(size)
        block = pending + data
        cut = len(block) if not data else _record_end(block, csv=csv)
        if cut and block[:cut].strip():
            yield block[:cut]
        lines += block.count(b"\n", 0, cut)
        pending = block[cut:]
        if not data:
            return
        if len(pending) > MAX_RECORD_BYTES:
            raise DataMismatch(
                f"could not read the csv file: the record starting at line {lines + 1:,} "
                f'runs over {len(pending):,} bytes: a double quote (") opens a quoted value '
                'that never closes. Inside a value, write a quote twice (""), or quote the '
                "whole value"
            )


def _record_end(block: bytes, *, csv: bool) -> int:
    """Where the last complete record of ``block`` ends (0: none yet).

    ``block`` starts at a record boundary. For CSV, a newline ends a record
    when the quotes before it are even in number (counted in one vectorised
    pass, so that a long open record costs linear time).
    """
    end = block.rfind(b"\n")
    if not csv or end < 0:
        return end + 1
    if not block.count(b'"', 0, end) % 2:
        return end + 1
    import numpy as np

    data = np.frombuffer(block, dtype=np.uint8)
    quotes = np.flatnonzero(data == ord('"'))
    newlines = np.flatnonzero(data == ord("\n"))
    closed = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
    return int(closed[-1]) + 1 if closed.size else 0


def unreadable(path: Path, fmt: str, err: Exception) -> DataMismatch:
    """The provider's message for a file Polars could not read."""
    found = _diagnose_csv(path) if fmt == "csv" else None
    return DataMismatch(f"could not read the {fmt} file: {found or err}")


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


def _convert(
    source: Path, fmt: str, schema: Schema, cleaning: Cleaning | None, target: Path
) -> Truncation:
    """Check ``source`` against ``schema`` and write it to ``target`` as Parquet.

    Two passes over the file, a batch at a time: the first cleans (if asked)
    and checks every batch, refusing the file with every problem found; the
    second cleans and converts each batch again, drops the rows beyond each
    person's bounds, and appends it to the Parquet file. Memory is bounded by
    a batch or, when the privacy unit names a person column, by one partition
    of that column (`PersonLimits`).

    Raises:
        DataMismatch: unreadable data, or data that does not match the schema.
    """
    import polars as pl
    import pyarrow.parquet as pq

    def batches() -> Iterator[tuple[Any, int]]:
        for batch in read_batches(source, fmt):
            yield clean(batch, schema, cleaning) if cleaning else (batch, 0)

    checker = Conformer(schema)
    limits = None
    if schema.privacy_unit.identifier is not None:
        spill = target.parent / f".{target.name}.persons"
        spill.mkdir(exist_ok=True)
        partitions = source.stat().st_size // PERSON_PARTITION_BYTES
        limits = PersonLimits(schema, spill, min(partitions, MAX_PERSON_PARTITIONS))
    try:
        cleaned = 0
        for batch, dropped in batches():
            checker.observe(batch)
            if limits is not None:
                limits.add(checker.typed(batch))
            cleaned += dropped
        checker.finish()
        if limits is not None:
            limits.finish()
        offset = 0
        with contextlib.ExitStack() as stack:
            writer = None
            pending: list[Any] = []
            for last, (batch, _) in _last_marked(batches()):
                typed = checker.typed(batch)
                if limits is not None:
                    typed = limits.drop(typed, offset)
                offset += batch.height
                pending.append(typed)
                if not last and sum(p.height for p in pending) < ROW_GROUP_ROWS:
                    continue  # small batches make a row group together
                table = pl.concat(pending).to_arrow(compat_level=pl.CompatLevel.oldest())
                pending = []
                if writer is None:
                    writer = stack.enter_context(
                        pq.ParquetWriter(target, table.schema, write_statistics=False)
                    )
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    finally:
        if limits is not None:
            limits.close()
            shutil.rmtree(spill, ignore_errors=True)
    truncation = limits.truncation if limits is not None else Truncation()
    return dataclasses.replace(truncation, rows_cleaned=cleaned)


def _last_marked(items: Iterator[Any]) -> Iterator[tuple[bool, Any]]:
    """Each item with whether it is the last one."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield False, current
        current = following
    yield True, current


class Catalog:
    """Datasets registered in this enclave."""

    def __init__(
        self, engine: Engine, root: Path, superseded_grace: dt.timedelta = SUPERSEDED_GRACE
    ) -> None:
        self._engine = engine
        self._root = root
        self._grace = superseded_grace

    def create_tables(self) -> None:
        """Create the tables and the data folder if missing; purge expired superseded files."""
        budget.upgrade_schema(self._engine, "enclave")
        self._root.mkdir(parents=True, exist_ok=True)
        self.purge_superseded()

    def register(
        self,
        name: str,
        owner: str,
        schema_toml: str,
        source: Path,
        fmt: str,
        cleaning: Cleaning | None = None,
        *,
        sha256: str | None = None,
        record: Callable[[Connection, int], object] | None = None,
    ) -> tuple[DatasetEntry, Truncation]:
        """Check ``source`` against the schema and store it as Parquet.

        A name registered again after its deletion continues its version
        numbers (its ledger entries name them), and ``record(conn, version)``
        then chains that version in the ledger, in the same transaction.

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

        def commit(conn: Connection, file: str, version: int, now: dt.datetime) -> None:
            conn.execute(
                insert(datasets_table).values(
                    name=name,
                    owner=owner,
                    schema_json=schema.to_json(),
                    file=file,
                    created_at=now,
                    version=version,
                )
            )
            if version > 1 and record is not None:
                record(conn, version)

        try:
            version, path, now, truncation = self._store(
                name, owner, schema, source, fmt, cleaning, commit, False, sha256
            )
        except IntegrityError:
            raise AlreadyExists(f"dataset {name!r} is already registered") from None
        finally:
            TRIMMER.poke()  # the upload's working set, once freed, goes back to the OS
        log.info("dataset %s registered by %s (%d columns)", name, owner, len(schema.columns))
        return DatasetEntry(name, owner, schema, path, now, version), truncation

    def add_version(
        self,
        name: str,
        by: str,
        source: Path,
        fmt: str,
        schema: Schema,
        cleaning: Cleaning | None,
        *,
        replaces: int,
        new_period: bool,
        record: Callable[[Connection, int], object],
        sha256: str | None = None,
    ) -> tuple[DatasetEntry, Truncation]:
        """Replace a registered dataset's data with a new version, checked like the first.

        The catalog switches to the new file, and ``record(conn, version)``
        (the ledger's `budget.Ledger.record_version`) runs, in one
        transaction: researchers' next releases see the new version and its
        budgets together. The switch happens only if the dataset is still
        ``by``'s and still at version ``replaces``: an upload retried after
        its answer was lost, or racing another, adds no second version (and
        no second budget period). The previous version's file is purged
        after `SUPERSEDED_GRACE`, so that releases already priced on it finish.

        Raises:
            UnknownDataset: no dataset of that name (or it was deleted meanwhile).
            VersionConflict: the dataset is no longer at version ``replaces``.
            InvalidArgument: bad format.
            DataMismatch: data that does not match the schema.
        """
        if fmt not in FORMATS:
            raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if self.get(name) is None:
            raise UnknownDataset(f"no dataset called {name!r}")
        d = datasets_table.c

        def commit(conn: Connection, file: str, version: int, now: dt.datetime) -> None:
            switched = conn.execute(
                update(datasets_table)
                .where(d.name == name, d.owner == by, d.version == replaces)
                .values(file=file, version=version, schema_json=schema.to_json())
            ).rowcount
            if not switched:
                row = conn.execute(_BY_NAME, {"b_name": name}).mappings().first()
                if row is None:
                    raise UnknownDataset(f"no dataset called {name!r}: it was deleted meanwhile")
                if row["owner"] != by:
                    raise NotFound(f"you own no dataset called {name!r}")
                raise VersionConflict(
                    f"dataset {name!r} is at version {row['version']}, not {replaces} as this "
                    "upload expected: another upload replaced it meanwhile (perhaps this one, "
                    "if an earlier attempt's answer was lost). Nothing was changed; check "
                    f"`enclave dataset usage {name}` before uploading again"
                )
            record(conn, version)

        try:
            version, _path, _now, truncation = self._store(
                name, by, schema, source, fmt, cleaning, commit, new_period, sha256
            )
        finally:
            TRIMMER.poke()
        try:  # the version is committed: a failure here must not look like a refusal
            self.purge_superseded()
            if self._grace > dt.timedelta(0):
                timer = threading.Timer(self._grace.total_seconds() + 1, self.purge_superseded)
                timer.daemon = True
                timer.start()
        except Exception:
            log.exception("purging superseded files of %s failed; retried at start-up", name)
        log.info(
            "dataset %s: version %d uploaded by %s (new budget period: %s)",
            name,
            version,
            by,
            new_period,
        )
        entry = self.get(name)
        if entry is None:
            raise UnknownDataset(f"dataset {name!r} was deleted just after its new version")
        return entry, truncation

    def _store(
        self,
        name: str,
        by: str,
        schema: Schema,
        source: Path,
        fmt: str,
        cleaning: Cleaning | None,
        commit: Callable[[Connection, str, int, dt.datetime], None],
        new_period: bool,
        sha256: str | None,
    ) -> tuple[int, Path, dt.datetime, Truncation]:
        """Convert ``source`` next to the dataset's files, then record it as its next version.

        ``commit(conn, file, version, now)`` points the catalog row at the file,
        in the transaction that records the version; on any failure the new
        file is removed and nothing is recorded.
        """
        folder = self._root / name
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{uuid.uuid4().hex}.parquet"
        tmp = folder / f".{final.name}.tmp"
        v = dataset_versions.c
        try:
            truncation = _convert(source, fmt, schema, cleaning, tmp)
            os.replace(tmp, final)
            now = dt.datetime.now(dt.UTC)
            file = str(final.relative_to(self._root))
            with self._engine.connect().execution_options(immediate=True) as conn, conn.begin():
                # Versions of one dataset are numbered one at a time: its row is
                # locked (on SQLite the write lock is: BEGIN IMMEDIATE).
                conn.execute(
                    select(datasets_table.c.name)
                    .where(datasets_table.c.name == name)
                    .with_for_update()
                )
                last = conn.execute(select(func.max(v.version)).where(v.dataset == name)).scalar()
                version = (last or 0) + 1
                conn.execute(
                    update(dataset_versions)
                    .where(v.dataset == name, v.superseded_at.is_(None))
                    .values(superseded_at=now)
                )
                conn.execute(
                    insert(dataset_versions).values(
                        dataset=name,
                        version=version,
                        file=file,
                        uploaded_by=by,
                        uploaded_at=now,
                        new_period=new_period,
                        sha256=sha256,
                    )
                )
                commit(conn, file, version, now)
        except BaseException:
            tmp.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()  # if this attempt made it: nothing is left behind
            raise
        return version, final, now, truncation

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version ``name`` has had, oldest first (also after its deletion)."""
        v = dataset_versions.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(dataset_versions).where(v.dataset == name).order_by(v.version)
            ).mappings()
            return [
                VersionInfo(
                    r["version"],
                    r["uploaded_by"],
                    r["uploaded_at"],
                    r["new_period"],
                    r["superseded_at"],
                    r["file"] is not None,
                    r["sha256"],
                )
                for r in rows
            ]

    def purge_superseded(self, now: dt.datetime | None = None) -> int:
        """Delete the files of versions superseded more than the grace period ago.

        Runs at start-up, after each new version, and a grace period after it.

        Returns:
            How many files were purged.
        """
        v = dataset_versions.c
        cutoff = (now or dt.datetime.now(dt.UTC)) - self._grace
        with self._engine.connect() as conn:
            expired = conn.execute(
                select(v.dataset, v.version, v.file).where(
                    v.file.is_not(None), v.superseded_at.is_not(None), v.superseded_at <= cutoff
                )
            ).all()
        for dataset, version, file in expired:
            (self._root / file).unlink(missing_ok=True)
            with self._engine.begin() as conn:
                conn.execute(
                    update(dataset_versions)
                    .where(v.dataset == dataset, v.version == version)
                    .values(file=None)
                )
            log.info("dataset %s: purged the file of superseded version %d", dataset, version)
        return len(expired)

    def delete(self, name: str) -> None:
        """Unregister ``name`` and purge its data files. The ledger is not touched.

        The catalog row goes first (in its own transaction), so the name stops
        resolving before the files disappear.
        """
        from sqlalchemy import delete

        check_name(name)
        now = dt.datetime.now(dt.UTC)
        v = dataset_versions.c
        with self._engine.begin() as conn:
            conn.execute(delete(datasets_table).where(datasets_table.c.name == name))
            conn.execute(
                update(dataset_versions)
                .where(v.dataset == name, v.superseded_at.is_(None))
                .values(superseded_at=now)
            )
            conn.execute(update(dataset_versions).where(v.dataset == name).values(file=None))
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
        return DatasetHandle(entry.name, entry.schema, entry.path, version=entry.version)

    def _entry(self, row: Any) -> DatasetEntry:
        return DatasetEntry(
            name=row["name"],
            owner=row["owner"],
            schema=Schema.from_json(row["schema_json"]),
            path=self._root / row["file"],
            created_at=row["created_at"],
            version=row["version"],
        )


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One version of a dataset, as its provider and DPO see it (times in UTC; naive on SQLite)."""

    version: int
    uploaded_by: str
    uploaded_at: dt.datetime
    new_period: bool
    superseded_at: dt.datetime | None
    #: False once the file was purged (superseded past the grace, or deleted).
    stored: bool
    #: The uploaded file's SHA-256 (None: sent in one message, or from before versions).
    sha256: str | None = None


#: Temporary files older than this are a crashed process's (see `sweep_leftovers`).
LEFTOVER_AGE = dt.timedelta(hours=6)


def sweep_leftovers(data_dir: Path, now: dt.datetime | None = None) -> int:
    """Delete what a server that crashed left: half-written Parquet, spills, uploads.

    Registration's temporary Parquet (``datasets/*/.*.tmp``) and person spills
    (``datasets/*/.*.persons``), received uploads (``uploads/upload-*``) and
    quality-report spills (``uploads/.quality-*``). Only those untouched for
    `LEFTOVER_AGE`: replicas sharing the data dir may be writing fresh ones.
    Spills hold person identifiers, uploads the provider's data: neither
    should outlive the call that made them.

    Returns:
        How many were deleted.
    """
    cutoff = (now or dt.datetime.now(dt.UTC)).timestamp() - LEFTOVER_AGE.total_seconds()
    found = [
        *data_dir.glob("datasets/*/.*.tmp"),
        *data_dir.glob("datasets/*/.*.persons"),
        *data_dir.glob("uploads/upload-*"),
        *data_dir.glob("uploads/.quality-*"),
    ]
    swept = 0
    for path in found:
        try:
            if path.stat().st_mtime > cutoff:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue  # gone meanwhile, or not ours to delete
        swept += 1
        log.warning("deleted %s, left by a server that stopped while using it", path)
    return swept


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
