"""The catalog's dataset versions, on SQLite and PostgreSQL (see conftest's ``database_url``).

* concurrent new versions of one dataset are numbered one at a time, each with
  its ledger entry, in the same order;
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


def test_concurrent_versions_are_numbered_one_at_a_time(engine: Engine, tmp_path: Path) -> None:
    ledger, catalog = _parts(engine, tmp_path / "datasets")
    catalog.register("d", "prov", SCHEMA, _csv(tmp_path / "v1.csv", 10), "csv")
    schema = Schema.from_toml(SCHEMA)
    errors: list[BaseException] = []

    def upload(i: int) -> None:
        try:
            catalog.add_version(
                "d",
                "prov",
                _csv(tmp_path / f"u{i}.csv", 10 + i),
                "csv",
                schema,
                None,
                new_period=i % 2 == 0,
                record=lambda conn, v: ledger.record_version(
                    conn, "d", v, new_period=i % 2 == 0, by="prov"
                ),
            )
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
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
    catalog.add_version(
        "d",
        "prov",
        _csv(tmp_path / "v2.csv", 20),
        "csv",
        Schema.from_toml(SCHEMA),
        None,
        new_period=False,
        record=lambda conn, v: ledger.record_version(conn, "d", v, new_period=False, by="prov"),
    )
    entry = catalog.get("d")
    assert entry is not None and entry.version == 2 and entry.path != first.path
    assert first.path.exists()  # kept for the grace period
    ledger.close()
