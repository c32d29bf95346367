"""A throwaway PostgreSQL server for the tests: its own cluster, on loopback only.

It uses the machine's PostgreSQL binaries (Debian's ``postgresql`` package, which
``.ci/run`` installs when missing). PostgreSQL refuses to run as root, so as root
the cluster belongs to the ``postgres`` system user that package creates. The
cluster listens on 127.0.0.1 at a free port, with no Unix socket and no fsync
(it is thrown away), and trusts local connections: it holds test data only.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER = "enclave"


def _binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass(frozen=True)
class PostgresServer:
    """A running cluster; `database` makes a fresh, empty database on it."""

    port: int
    data_dir: Path
    bindir: Path

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new database for one test; dropped afterwards."""
        import sqlalchemy

        name = f"t_{uuid.uuid4().hex[:12]}"
        admin = sqlalchemy.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
            yield f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{name}"
            with admin.connect() as conn:
                conn.execute(sqlalchemy.text(f"DROP DATABASE {name} WITH (FORCE)"))
        finally:
            admin.dispose()

    def stop(self) -> None:
        pg_ctl = str(self.bindir / "pg_ctl")
        subprocess.run(
            _as_owner([pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def start() -> PostgresServer:
    """Initialise and start a cluster in a new temporary directory.

    Raises:
        RuntimeError: no PostgreSQL binaries, or the server would not start.
    """
    bindir = _binaries()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    # Not under pytest's temp dir: the postgres user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="enclave-pg-"))
    root.chmod(0o755)
    data_dir = root / "pgdata"
    data_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data_dir, "postgres")
    init = subprocess.run(
        _as_owner(
            [str(bindir / "initdb"), "-D", str(data_dir), "-U", USER, "-A", "trust", "--no-sync"]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stdout}{init.stderr}")
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data_dir), "-o", options]
    done = subprocess.run(
        _as_owner([*pg_ctl, "-l", str(root / "log"), "-w", "start"]),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {done.stdout}{done.stderr}{log}")
    return PostgresServer(port, data_dir, bindir)
