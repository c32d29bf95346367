"""Shared fixtures: a small confidential dataset with known truth, and a real
Enclave gRPC server on port 0 backed by a real SQLite database."""

from __future__ import annotations

import csv
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCHEMA_TOML = """
description = "Test stays"
max_rows = 100000

[columns.region]
type = "category"
categories = ["north", "south", "east", "west"]

[columns.nights]
type = "int"
bounds = [1, 14]

[columns.spend]
type = "float"
bounds = [0, 500]

[columns.age]
type = "int"
bounds = [18, 90]

[columns.repeat]
type = "bool"
"""
# The same columns, with a person identifier as privacy unit (two rows per person).
PEOPLE_SCHEMA = SCHEMA_TOML.replace(
    'description = "Test stays"', 'description = "Test stays with a person identifier"'
).replace(
    "max_rows = 100000\n",
    'max_rows = 100000\nprivacy_unit = { column = "person", max_rows_per_person = 2 }\n'
    '\n[columns.person]\ntype = "string"\n',
)
N_ROWS = 4000


def make_rows(n: int = N_ROWS, seed: int = 7) -> list[dict[str, object]]:
    """Deterministic test rows; region "west" is declared but absent from the data."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        rows.append(
            {
                "region": rng.choice(["north", "north", "south", "east"]),
                "nights": rng.randint(1, 14),
                "spend": round(rng.uniform(0, 500), 2),
                "age": rng.randint(18, 90),
                "repeat": rng.random() < 0.3,
            }
        )
    return rows


@pytest.fixture(scope="session")
def rows() -> list[dict[str, object]]:
    return make_rows()


@pytest.fixture(scope="session")
def dataset_files(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, object]]
) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("data")
    data = folder / "stays.csv"
    with open(data, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "repeat": "true" if r["repeat"] else "false"})
    schema = folder / "stays.schema.toml"
    schema.write_text(SCHEMA_TOML)
    return data, schema


@dataclass
class Server:
    """A running server and tokens for each role."""

    address: str
    app: object
    running: object
    admin_token: str
    provider_token: str
    dpo_token: str
    _counter: itertools.count  # type: ignore[type-arg]

    def researcher(self, epsilon: str | float | None = "10", name: str | None = None) -> str:
        """A fresh researcher (granted ``epsilon`` on "stays" unless None); returns the token."""
        from enclave import Client

        name = name or f"researcher{next(self._counter)}"
        with Client(self.address, self.admin_token) as admin:
            token = admin.create_principal(name, "researcher")
        if epsilon is not None:
            with Client(self.address, self.provider_token) as provider:
                provider.grant("stays", name, epsilon)
        return token


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, dataset_files: tuple[Path, Path]
) -> Iterator[Server]:
    from enclave import Client
    from enclave._app import Enclave
    from enclave._server import start_server
    from jobs import Limits

    app = Enclave(tmp_path_factory.mktemp("enclave"))
    _admin, admin_token = app.principals.create("root", "admin", created_by="test")
    running = start_server(
        app,
        "127.0.0.1:0",
        insecure=True,
        limits=Limits(cpu_seconds=3, memory_mb=256, wall_seconds=20),
        max_concurrent_jobs=4,
    )
    address = f"127.0.0.1:{running.port}"
    with Client(address, admin_token) as admin:
        provider_token = admin.create_principal("provider", "provider")
        dpo_token = admin.create_principal("dpo", "dpo")
    data, schema = dataset_files
    with Client(address, provider_token) as provider:
        provider.register_dataset("stays", data, schema)
    yield Server(address, app, running, admin_token, provider_token, dpo_token, itertools.count(1))
    running.stop(grace=5)


@dataclass
class OwnServer:
    """A test's own server (settings of its own), with "stays" granted to "alice"."""

    address: str
    researcher: str
    app: Any
    running: Any
    provider: str


@pytest.fixture
def own_server(
    tmp_path: Path, dataset_files: tuple[Path, Path]
) -> Iterator[Callable[..., OwnServer]]:
    """Start a server with the given `start_server` settings (limits, caps...).

    The provider "prov" registers "stays"; researcher "alice" gets ε = 5 on it.
    """
    from enclave import Client
    from enclave._app import Enclave
    from enclave._server import start_server

    started: list[OwnServer] = []

    def start(**settings: Any) -> OwnServer:
        app = Enclave(tmp_path / f"server{len(started)}")
        _admin, admin_token = app.principals.create("root", "admin", created_by="test")
        running = start_server(app, "127.0.0.1:0", insecure=True, **settings)
        address = f"127.0.0.1:{running.port}"
        with Client(address, admin_token) as admin:
            provider = admin.create_principal("prov", "provider")
            researcher = admin.create_principal("alice", "researcher")
        data, schema = dataset_files
        with Client(address, provider) as c:
            c.register_dataset("stays", data, schema)
            c.grant("stays", "alice", 5)
        started.append(OwnServer(address, researcher, app, running, provider))
        return started[-1]

    yield start
    for own in started:
        own.running.stop(grace=1)
        own.app.close()


@pytest.fixture(scope="module")
def people(server, rows, tmp_path_factory) -> str:
    """The same rows with a person identifier: two rows per person."""
    from enclave import Client

    folder = tmp_path_factory.mktemp("people")
    path = folder / "people.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["person", *rows[0]])
        writer.writeheader()
        for i, r in enumerate(rows):
            writer.writerow({"person": f"p{i // 2}", **r, "repeat": str(r["repeat"]).lower()})
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("people", path, PEOPLE_SCHEMA)
    return "people"


# --- PostgreSQL ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A throwaway PostgreSQL cluster on loopback, or a skip where none can run.

    With ``ENCLAVE_TEST_POSTGRES=required`` (set by ``.ci/run``) a cluster that
    cannot start fails the tests instead of skipping them.
    """
    import os

    from postgres_server import start

    try:
        server = start()
    except Exception as err:
        if os.environ.get("ENCLAVE_TEST_POSTGRES") == "required":
            raise
        pytest.skip(f"no PostgreSQL server for these tests: {err}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: an SQLite file, or a new database on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite'}"
        return
    server = request.getfixturevalue("postgres")
    with server.database() as url:  # type: ignore[attr-defined]
        yield url
