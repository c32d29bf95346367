"""The catalog's dataset versions, on SQLite and PostgreSQL (see conftest's ``database_url``).

* concurrent new versions of one dataset that replace the same version: one
  wins, the others are refused (`VersionConflict`) and leave no trace; versions
  that each replace the one before are numbered one at a time, each with its
  ledger entry;
* a database whose catalog predates versions upgrades in place: each dataset
  becomes its version 1, and the next upload its version 2.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

import budget
from budget import Ledger
from enclave._catalog import Catalog
from enclave._errors import VersionConflict
from jobs import Schema

SCHEMA = '[columns.n]\ntype = "int"\nbounds = [0, 100]\n'


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = budget.create_engine(database_url)
    yield eng
    eng.dispose()


def _parts(engine: Engine, root: Path) -> tuple[Ledger, Catalog]:
    ledger, catalog = Ledger(engine), Catalog(engine, root)
    ledger.create_tables()
    catalog.create_tables()
    return ledger, catalog


def _csv(path: Path, n: int) -> Path:
    path.write_text("n\n" + "".join(f"{i % 100}\n" for i in range(n)))
    return path


def _upload(
    ledger: Ledger, catalog: Catalog, file: Path, replaces: int, *, new_period: bool
) -> None:
    catalog.add_version(
        "d",
        "prov",
        file,
        "csv",
        Schema.from_toml(SCHEMA),
        None,
        replaces=replaces,
        new_period=new_period,
        record=lambda conn, v: ledger.record_version(
            conn, "d", v, new_period=new_period, by="prov"
        ),
    )


def test_concurrent_versions_of_the_same_version_let_one_win(
    engine: Engine, tmp_path: Path
) -> None:
    ledger, catalog = _parts(engine, tmp_path / "datasets")
    catalog.register("d", "prov", SCHEMA, _csv(tmp_path / "v1.csv", 10), "csv")
    outcomes: list[BaseException | None] = []

    def upload(i: int) -> None:
        try:
            _upload(ledger, catalog, _csv(tmp_path / f"u{i}.csv", 10 + i), 1, new_period=True)
        except VersionConflict as err:
            outcomes.append(err)
        else:
            outcomes.append(None)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(None) == 1
    assert all("is at version 2, not 1" in str(e) for e in outcomes if e is not None)
    assert [v.version for v in catalog.versions("d")] == [1, 2]
    assert [(e.kind, e.dataset_version) for e in ledger.entries()] == [("new_period", 2)]
    assert len(list((tmp_path / "datasets" / "d").iterdir())) == 2  # no loser's file left
    ledger.verify()
    ledger.close()


def test_versions_in_a_row_are_numbered_one_at_a_time(engine: Engine, tmp_path: Path) -> None:
    ledger, catalog = _parts(engine, tmp_path / "datasets")
    catalog.register("d", "prov", SCHEMA, _csv(tmp_path / "v1.csv", 10), "csv")
    for i in range(4):
        _upload(ledger, catalog, _csv(tmp_path / f"u{i}.csv", 10 + i), i + 1, new_period=i % 2 == 0)
    versions = catalog.versions("d")
    assert [v.version for v in versions] == [1, 2, 3, 4, 5]
    assert [v.superseded_at is None for v in versions] == [False] * 4 + [True]
    entries = ledger.entries(dataset="d")
    assert [e.dataset_version for e in entries] == [2, 3, 4, 5]
    # The ledger's kind of each version is the catalog's choice for it.
    by_version = {v.version: v.new_period for v in versions}
    assert all((e.kind == "new_period") == by_version[e.dataset_version] for e in entries)
    entry = catalog.get("d")
    assert entry is not None and entry.version == 5
    assert catalog.resolve("d").version == 5
    ledger.verify()
    ledger.close()


def test_a_catalog_from_before_versions_upgrades_in_place(engine: Engine, tmp_path: Path) -> None:
    ledger, catalog = _parts(engine, tmp_path / "datasets")
    catalog.register("d", "prov", SCHEMA, _csv(tmp_path / "v1.csv", 10), "csv")
    first = catalog.get("d")
    assert first is not None
    with engine.begin() as conn:  # what the catalog looked like at enclave_0001
        conn.execute(text("DROP TABLE dataset_versions"))
        conn.execute(text("ALTER TABLE datasets DROP COLUMN version"))
        conn.execute(text("UPDATE alembic_version_enclave SET version_num = 'enclave_0001'"))
    catalog.create_tables()
    assert budget.schema_revision(engine, "enclave") == "enclave_0002"
    [v1] = catalog.versions("d")
    assert (v1.version, v1.uploaded_by, v1.stored, v1.superseded_at) == (1, "prov", True, None)
    _upload(ledger, catalog, _csv(tmp_path / "v2.csv", 20), 1, new_period=False)
    entry = catalog.get("d")
    assert entry is not None and entry.version == 2 and entry.path != first.path
    assert first.path.exists()  # kept for the grace period
    ledger.close()


def test_a_crashed_servers_leftovers_are_swept_but_fresh_ones_kept(tmp_path: Path) -> None:
    """Half-written Parquet, person spills (identifiers) and received uploads (data)
    of a server that died; what a live replica is writing now stays."""
    import os
    import time

    from enclave._catalog import sweep_leftovers

    old = [
        tmp_path / "datasets" / "d" / ".abc.parquet.tmp",
        tmp_path / "datasets" / "d" / ".abc.parquet.tmp.persons" / "persons-0.arrow",
        tmp_path / "uploads" / "upload-1.csv",
        tmp_path / "uploads" / ".quality-x" / "persons-3.arrow",
    ]
    fresh = tmp_path / "uploads" / "upload-2.csv"
    kept = tmp_path / "datasets" / "d" / "current.parquet"
    for path in [*old, fresh, kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    day_ago = time.time() - 24 * 3600
    for path in [*old, kept, *(p.parent for p in old[1::2])]:
        os.utime(path, (day_ago, day_ago))
    assert sweep_leftovers(tmp_path) == 4
    assert not any(p.exists() for p in old)
    assert not (tmp_path / "uploads" / ".quality-x").exists()
    assert fresh.exists() and kept.exists()
