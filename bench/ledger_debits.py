"""Benchmark of the ledger's debit rate, beside the same database's bare commit rate.

Not a test: run it by hand (`python bench/ledger_debits.py --debits 2000`).

Why this comparison: a debit must be on disk before the value it pays for is
released (invariant 2), so no ledger can debit faster than its database commits
durably. The honest yardstick is the rate of bare durable commits of one small
row, on the same database, through the same engine, with the same number of
concurrent clients, in the same run. The targets: a debit costs no more than
1.25 bare commits (debits/s >= 0.8x bare commits/s), and no overspend at all.

For each backend and number of clients, on a fresh database, the clients stay
up for ``--rounds`` rounds; each round has two phases, in ABBA order (bare then
debits, debits then bare, ...) so that a drift in the machine's load or disk
weighs on both alike:

* bare: the clients commit the round's share of N single-row INSERTs between
  them, each its own transaction, the way a debit is one (a connection from
  the engine's pool, ``BEGIN`` -- ``IMMEDIATE`` on SQLite, as for a debit --,
  ``INSERT``, ``COMMIT``);
* debits: the grant's cap is first raised by exactly the round's share of N
  debits of ε = 0.01, then the clients call `budget.Ledger.debit` about 10%
  more often than that between them.

How debits/s is timed, and why: a phase's clock starts when all clients are
released together and stops when its last *successful* operation returns; for
debits that is the moment the round's budget is spent. A rate is the
operations of all rounds over the sum of their phases' times. Sizing each
round's budget exactly puts the overspend check under the very contention that
is timed, including the race for the last quanta of budget, where an overspend
would happen, once per round. (The other choice -- a cap so large that every
timed attempt succeeds, then a separate overspend run -- times the same code
path but checks overspend outside the measured run.) Refused attempts that race
the last successes are inside the timed window, as on a real server; those
after it are not counted.

Checked after each round and at the end: exactly the round's share of debits
succeeded, every other attempt was refused with `budget.BudgetExhausted`, the
grant's spent equals its cap, the ledger holds N entries and its hash chain
verifies. Any failure makes the exit status 1; a missed speed target does not
(it is printed).

Durability is checked, not assumed: SQLite must run WAL with synchronous FULL
(or EXTRA), PostgreSQL with fsync and synchronous_commit on; the settings in
force are printed, and a run that is not durable is flagged.

Clients are threads sharing one engine from `budget.create_engine` and one
`budget.Ledger`, as concurrent jobs share the server's (and its group commit:
debits that arrive while one commits are committed together next). That
engine's pool (SQLAlchemy's default, 5 connections plus 10 overflow, overflow
ones closed on return) bounds how many clients talk to the database at once;
the ledger keeps one of them for its debits; the ``conns`` column counts
connections opened during the bare/debit phases. ``--processes`` adds rows
where each client is a process with its own engine, as replicas are, so every
client has a connection of its own (and no shared GIL).

SQLite runs on a file in a new temporary directory (``--dir`` picks where; on a
tmpfs every commit would look free). PostgreSQL runs on ``--postgres-url`` or,
without it, on a throwaway cluster from ``tests/postgres_server.py``, restarted
with fsync on (the tests' helper turns fsync off, right for tests and wrong
here). Each configuration gets a new schema there, dropped at the end.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, Table, event, insert, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import budget  # noqa: E402
from budget._prepared import Prepared  # noqa: E402

EPSILON = Decimal("0.01")
DATASET = "bench"
PRINCIPAL = "alice"
#: Seconds to wait for the clients at a starting line or for a phase's results.
TIMEOUT = 600.0
TARGET_RATIO = 0.8

bare_table = Table(
    "bench_bare",
    MetaData(),
    # INTEGER PRIMARY KEY on SQLite (the rowid), SERIAL on PostgreSQL.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("v", BigInteger, nullable=False),
)

#: One phase of a client's plan: ("bare" or "debit", operations or attempts).
Step = tuple[str, int]


@dataclass
class ClientResult:
    """What one client did in one phase; times are `time.monotonic`, one clock for all processes.

    ``connects`` and ``rollbacks`` are filled in by process clients only (each has
    its own engine); thread clients share one engine, counted by the driver.
    """

    done: int = 0
    refused: int = 0
    last_done: float = 0.0
    errors: list[str] = field(default_factory=list)
    connects: int = 0
    rollbacks: int = 0


@dataclass
class Phase:
    """The bare or debit phases of one configuration, all rounds summed."""

    done: int = 0
    refused: int = 0
    seconds: float = 0.0
    connects: int = 0
    rollbacks: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def add(
        self, results: list[ClientResult], started: float, connects: int, rollbacks: int
    ) -> int:
        """Add one phase of all clients; return its operations."""
        done = sum(r.done for r in results)
        self.done += done
        self.refused += sum(r.refused for r in results)
        self.seconds += max((r.last_done for r in results if r.done), default=started) - started
        self.connects += connects
        self.rollbacks += rollbacks
        self.errors += [e for r in results for e in r.errors]
        return done


@dataclass
class Row:
    """One line of the table: a backend, a number of clients and a way to run them."""

    backend: str
    clients: int
    mode: str
    bare: Phase
    debits: Phase
    overspend: int
    durable: bool
    failures: list[str]

    @property
    def ratio(self) -> float:
        return self.debits.rate / self.bare.rate if self.bare.rate else 0.0

    @property
    def retries(self) -> int:
        """Transactions rolled back and retried because the chain head moved (``_HeadMoved``).

        A refused debit is undone inside its batch's transaction (group commit),
        so a debit transaction rolls back only when it fails or when another
        writer extended the chain first; only the last is retried.
        """
        return self.debits.rollbacks - len(self.debits.errors)


class _Counters:
    """Connections opened and transactions rolled back on one engine.

    Only these two rare events are listened to, so that the timed statements
    pay for no instrumentation.
    """

    def __init__(self, engine: Engine) -> None:
        self.connects = 0
        self.rollbacks = 0
        self._lock = threading.Lock()
        event.listen(engine, "connect", self._on_connect)
        event.listen(engine, "rollback", self._on_rollback)

    def _on_connect(self, _dbapi: Any, _record: Any) -> None:
        with self._lock:
            self.connects += 1

    def _on_rollback(self, _conn: Any) -> None:
        with self._lock:
            self.rollbacks += 1


# --- a client ------------------------------------------------------------------------


def _bare(engine: Engine, client: int, phase: int, count: int) -> ClientResult:
    """Commit ``count`` single-row INSERTs, one transaction each, as a debit is one."""
    result = ClientResult()
    try:
        for i in range(count):
            with engine.connect().execution_options(immediate=True) as conn, conn.begin():
                conn.execute(insert(bare_table).values(v=(client * 1000 + phase) * 100_000 + i))
            result.done += 1
            result.last_done = time.monotonic()
    except Exception as err:
        result.errors.append(f"bare client {client}: {err!r}")
    return result


def _debits(ledger: budget.Ledger, client: int, phase: int, attempts: int) -> ClientResult:
    """Attempt ``attempts`` debits; refusals are expected once the round's budget is spent."""
    result = ClientResult()
    job = f"client{client}-phase{phase}"
    for i in range(attempts):
        try:
            ledger.debit(PRINCIPAL, DATASET, EPSILON, job_id=job, release_index=i)
        except budget.BudgetExhausted:
            result.refused += 1
            continue
        except Exception as err:
            result.errors.append(f"debit client {client}: {err!r}")
            break
        result.done += 1
        result.last_done = time.monotonic()
    return result


def _client(
    engine: Engine,
    client: int,
    plan: list[Step],
    start: Any,
    out: Any,
    counters: _Counters | None = None,
    ledger: budget.Ledger | None = None,
) -> None:
    """Run a plan, one phase per release of the ``start`` barrier; each result to ``out``.

    Thread clients share one ``ledger``, as a server's concurrent jobs share its
    ledger (and its group commit); a process client has its own, as a replica.
    """
    shared = ledger is not None
    ledger = ledger or budget.Ledger(engine)
    for phase, (kind, count) in enumerate(plan):
        before = (counters.connects, counters.rollbacks) if counters else (0, 0)
        try:
            start.wait(TIMEOUT)
        except threading.BrokenBarrierError:
            return  # the driver gave up; it reports why
        if kind == "bare":
            result = _bare(engine, client, phase, count)
        else:
            result = _debits(ledger, client, phase, count)
            if not shared:
                ledger.close()  # its connection back to the pool, for the bare phase
        if counters is not None:
            result.connects = counters.connects - before[0]
            result.rollbacks = counters.rollbacks - before[1]
        out.put(result)


def _process_client(
    url: str, client: int, plan: list[Step], start: Any, out: Any
) -> None:  # pragma: no cover - runs in a child process
    """A client in its own process: its own engine, connected before the first start."""
    engine = budget.create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    _client(engine, client, plan, start, out, _Counters(engine))
    engine.dispose()


# --- one configuration ---------------------------------------------------------------


def _shares(total: int, parts: int) -> list[int]:
    """Split ``total`` operations into ``parts`` as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _extra(n: int, clients: int) -> int:
    """Attempts beyond a round's budget: enough that every client is refused at the end."""
    return max(n // 10, 2 * clients)


def _phases(n: int, clients: int, rounds: int) -> list[tuple[str, int]]:
    """(kind, operations) per phase: rounds of bare and debits in ABBA order."""
    phases = []
    for r, share in enumerate(_shares(n, rounds)):
        pair = [("bare", share), ("debit", share)]
        phases += pair if r % 2 == 0 else pair[::-1]
    return [(kind, share) for kind, share in phases if share]


def _prepare(engine: Engine) -> budget.Ledger:
    """A fresh ledger and the bare table; the grant comes with the first debit phase."""
    ledger = budget.Ledger(engine)
    ledger.create_tables()
    bare_table.create(engine, checkfirst=True)
    return ledger


def _warm(engine: Engine, clients: int) -> None:
    """Open the connections the pool keeps, so the first phase does not pay for them."""
    pool: Any = engine.pool
    size = pool.size() if hasattr(pool, "size") else clients
    conns = [engine.connect() for _ in range(min(clients, size))]
    for conn in conns:
        conn.execute(text("SELECT 1"))
    for conn in conns:
        conn.close()


def _configuration(
    backend: str, url: str, clients: int, mode: str, n: int, rounds: int, durable: bool
) -> Row:
    """Run every round of one configuration, then check for overspend."""
    engine = budget.create_engine(url)
    ledger = _prepare(engine)
    phases = _phases(n, clients, rounds)
    plans: list[list[Step]] = [[] for _ in range(clients)]
    for kind, share in phases:
        counts = _shares(share + (_extra(share, clients) if kind == "debit" else 0), clients)
        for c in range(clients):
            plans[c].append((kind, counts[c]))
    bare, debits = Phase(), Phase()
    failures: list[str] = []
    cap = 0
    workers: list[Any]
    counters: _Counters | None
    if mode == "threads":
        counters = _Counters(engine)
        _warm(engine, clients)
        start: Any = threading.Barrier(clients + 1)
        out: Any = queue.Queue()
        workers = [
            threading.Thread(target=_client, args=(engine, c, plans[c], start, out, None, ledger))
            for c in range(clients)
        ]
    else:
        counters = None
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Barrier(clients + 1)
        out = ctx.Queue()
        workers = [
            ctx.Process(target=_process_client, args=(url, c, plans[c], start, out))
            for c in range(clients)
        ]
    for w in workers:
        w.start()
    try:
        for number, (kind, share) in enumerate(phases):
            if kind == "debit":
                cap += share  # a cap must be positive: the first raise creates the grant
                ledger.grant(DATASET, PRINCIPAL, EPSILON * cap, granted_by="bench")
            before = (counters.connects, counters.rollbacks) if counters else (0, 0)
            start.wait(TIMEOUT)
            started = time.monotonic()
            results = [out.get(timeout=TIMEOUT) for _ in range(clients)]
            if counters is not None:
                connects, rollbacks = counters.connects - before[0], counters.rollbacks - before[1]
            else:
                connects = sum(r.connects for r in results)
                rollbacks = sum(r.rollbacks for r in results)
            done = (bare if kind == "bare" else debits).add(results, started, connects, rollbacks)
            if done != share:
                what = "bare commits" if kind == "bare" else "debits succeeded"
                failures.append(f"phase {number + 1}: {done} {what}, expected exactly {share}")
    except Exception as err:
        start.abort()
        failures.append(f"the run broke off: {err!r}")
    for w in workers:
        w.join(TIMEOUT)
    overspend, found = _check(ledger, n, debits)
    engine.dispose()
    failures = [*bare.errors, *debits.errors, *failures, *found]
    return Row(backend, clients, mode, bare, debits, overspend, durable, failures)


def _check(ledger: budget.Ledger, n: int, debits: Phase) -> tuple[int, list[str]]:
    """The overspend and its witnesses: successes, spent vs cap, entries, chain."""
    failures = []
    balance = ledger.balance(PRINCIPAL, DATASET)
    if balance.epsilon_spent != balance.epsilon_cap:
        failures.append(f"spent {balance.epsilon_spent} but the cap is {balance.epsilon_cap}")
    try:
        entries, _head = ledger.check()
    except budget.LedgerCorrupt as err:
        failures.append(f"the chain does not verify: {err}")
    else:
        if entries != n:
            failures.append(f"{entries} ledger entries for {n} debits")
    over_cap = budget.to_quanta(balance.epsilon_spent) - budget.to_quanta(balance.epsilon_cap)
    overspend = max(debits.done - n, math.ceil(max(over_cap, 0) / budget.to_quanta(EPSILON)), 0)
    return overspend, failures


# --- backends ------------------------------------------------------------------------


def _durability(url: str) -> tuple[bool, str]:
    """The settings that make a commit durable, as the engine's connections see them."""
    engine = budget.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                journal = str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
                sync = int(conn.exec_driver_sql("PRAGMA synchronous").scalar() or 0)
                names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
                # In WAL mode, NORMAL commits without syncing the WAL: not durable.
                return (
                    journal == "wal" and sync >= 2,
                    f"journal_mode={journal} synchronous={names.get(sync, sync)}",
                )
            show = {
                name: str(conn.exec_driver_sql(f"SHOW {name}").scalar())
                for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method")
            }
            return (
                show["fsync"] == "on" and show["synchronous_commit"] != "off",
                f"PostgreSQL {show['server_version'].split()[0]}, fsync={show['fsync']} "
                f"synchronous_commit={show['synchronous_commit']} "
                f"wal_sync_method={show['wal_sync_method']}",
            )
    finally:
        engine.dispose()


def _statements(url: str) -> str:
    """Statements sent per debit and per bare commit, counted once, outside the timing."""
    engine = budget.create_engine(url)
    ledger = _prepare(engine)
    ledger.grant(DATASET, PRINCIPAL, EPSILON * 20, granted_by="bench")
    seen: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    # The debit's own statements go to the DB-API cursor (budget._prepared), which
    # SQLAlchemy's events do not see: count those calls as well.
    run = Prepared.run

    def counted(self: Prepared, conn: Any, **params: Any) -> Any:
        seen.append(self.sql)
        return run(self, conn, **params)

    Prepared.run = counted  # type: ignore[method-assign]
    try:
        for i in range(10):
            ledger.debit(PRINCIPAL, DATASET, EPSILON, job_id="probe", release_index=i)
    finally:
        Prepared.run = run  # type: ignore[method-assign]
    per_debit = len(seen) / 10
    seen.clear()
    for i in range(10):
        with engine.connect().execution_options(immediate=True) as conn, conn.begin():
            conn.execute(insert(bare_table).values(v=i))
    per_bare = len(seen) / 10
    pool: Any = engine.pool
    engine.dispose()
    ping = "; plus a pool pre-ping per checkout" if getattr(pool, "_pre_ping", False) else ""
    limit = (
        f"; pool {pool.size()} + {pool._max_overflow} overflow connections"
        if hasattr(pool, "_max_overflow")
        else ""
    )
    return (
        f"statements per debit {per_debit:g} + COMMIT, per bare commit {per_bare:g} + COMMIT"
        f"{ping}{limit}"
    )


@contextmanager
def _sqlite_databases(where: str | None) -> Iterator[Callable[[str], str]]:
    """A new SQLite file per configuration, in a temporary directory removed at the end."""
    tmp = Path(tempfile.mkdtemp(prefix="enclave-bench-ledger-", dir=where))
    try:
        yield lambda name: f"sqlite:///{tmp / (name + '.sqlite')}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _postgres_databases(url: str) -> Iterator[Callable[[str], str]]:
    """A new schema per configuration (search_path in the URL), all dropped at the end."""
    admin = budget.create_engine(url)
    schemas: list[str] = []

    def fresh(_name: str) -> str:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn, conn.begin():
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        schemas.append(schema)
        with_path = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        return with_path.render_as_string(hide_password=False)

    try:
        yield fresh
    finally:
        with admin.connect() as conn, conn.begin():
            for schema in schemas:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


@contextmanager
def _postgres_url(given: str | None, required: bool) -> Iterator[str | None]:
    """The URL given, or a durable throwaway cluster's; None if none could start."""
    if given:
        yield given
        return
    try:
        import postgres_server

        server = postgres_server.start()
    except Exception as err:
        if required:
            raise
        print(f"postgresql: skipped, no server could be started: {err}", flush=True)
        yield None
        return
    try:
        # The helper starts the server with -c fsync=off, and a command-line setting
        # outranks ALTER SYSTEM: restart without it (PostgreSQL's default, fsync on).
        options = f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories=''"
        restart = [str(server.bindir / "pg_ctl"), "-D", str(server.data_dir), "-o", options]
        log = str(server.data_dir.parent / "log")
        subprocess.run(
            postgres_server._as_owner([*restart, "-l", log, "-m", "fast", "-w", "restart"]),
            capture_output=True,
            check=True,
        )
        yield server.admin_url
    finally:
        server.stop()


def _backend(
    backend: str, fresh: Callable[[str], str], args: argparse.Namespace, notes: list[str]
) -> list[Row]:
    durable, settings = _durability(fresh("settings"))
    flag = "durable" if durable else "NOT DURABLE: these rates are not of durable commits"
    notes.append(f"{backend}: {settings} ({flag})")
    notes.append(f"{backend}: {_statements(fresh('probe'))}")
    rows = []
    for clients in args.clients:
        for mode in ["threads", "processes"] if args.processes else ["threads"]:
            url = fresh(f"{mode}-{clients}")
            row = _configuration(backend, url, clients, mode, args.debits, args.rounds, durable)
            _print_row(row)
            rows.append(row)
    return rows


# --- output --------------------------------------------------------------------------

HEADER = (
    f"{'backend':10} {'clients':>7} {'mode':9} {'bare commits/s':>14} {'debits/s':>9} "
    f"{'debits/bare':>11} {'overspend':>9} {'refused':>7} {'retries':>7} {'conns b/d':>9}"
)


def _print_row(row: Row) -> None:
    conns = f"{row.bare.connects}/{row.debits.connects}"
    print(
        f"{row.backend:10} {row.clients:7d} {row.mode:9} {row.bare.rate:14.0f} "
        f"{row.debits.rate:9.0f} {row.ratio:10.2f}x {row.overspend:9d} "
        f"{row.debits.refused:7d} {row.retries:7d} {conns:>9}",
        flush=True,
    )


def _summary(rows: list[Row], notes: list[str]) -> int:
    """Print the settings, the targets and any failure; return the exit status."""
    for note in notes:
        print(note)
    print(f"load average at the end: {_load()}")
    if not rows:
        print("no configuration ran")
        return 1
    slow = [r for r in rows if r.ratio < TARGET_RATIO]
    missed = ", ".join(f"{r.backend} {r.clients} {r.mode} {r.ratio:.2f}x" for r in slow)
    print(
        f"target debits/s >= {TARGET_RATIO}x bare commits/s: "
        f"{'met' if not slow else 'NOT MET'}: met in {len(rows) - len(slow)} of {len(rows)} "
        f"configurations" + (f" (missed: {missed})" if slow else "")
    )
    overspent = sum(r.overspend for r in rows)
    print(
        f"target zero overspend: {'met' if not overspent else 'NOT MET'} (overspend "
        f"{overspent} in {len(rows)} configurations; checked each round and at the end: "
        "successes == budget, spent == cap, entries == debits, chain verifies)"
    )
    if not all(r.durable for r in rows):
        print("WARNING: some configurations did not commit durably (see the settings above)")
    failed = [(r, f) for r in rows for f in r.failures]
    for row, failure in failed:
        print(f"FAILED {row.backend} {row.clients} {row.mode}: {failure}")
    return 1 if failed or overspent else 0


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _list(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda text: [kind(x.strip()) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description="Ledger debits/s beside bare commits/s.")
    parser.add_argument("--debits", type=int, default=2000, help="budget, in debits, per run")
    parser.add_argument("--clients", type=_list(int), default=[1, 8, 64], help="e.g. 1,8,64")
    parser.add_argument(
        "--backends", type=_list(str), default=["sqlite", "postgresql"], help="sqlite,postgresql"
    )
    parser.add_argument("--rounds", type=int, default=4, help="bare/debit rounds, ABBA order")
    parser.add_argument("--postgres-url", help="a SQLAlchemy URL; else a throwaway cluster")
    parser.add_argument(
        "--require-postgres", action="store_true", help="fail instead of skipping PostgreSQL"
    )
    parser.add_argument(
        "--processes", action="store_true", help="also run each client as its own process"
    )
    parser.add_argument("--dir", help="where the SQLite files go (default: the temp dir)")
    args = parser.parse_args()
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if args.debits < 1 or args.rounds < 1 or not args.clients or min(args.clients) < 1:
        parser.error("--debits, --rounds and --clients must be at least 1")
    sys.exit(_run(args))


def _run(args: argparse.Namespace) -> int:
    print(
        f"debits per configuration: {args.debits:,} of ε={EPSILON} in {args.rounds} rounds "
        f"(attempts per round: its budget + max(10%, 2 per client)); "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, load average {_load()}",
        flush=True,
    )
    print(HEADER, flush=True)
    rows: list[Row] = []
    notes: list[str] = []
    if "sqlite" in args.backends:
        with _sqlite_databases(args.dir) as fresh:
            rows += _backend("sqlite", fresh, args, notes)
    if "postgresql" in args.backends:
        with _postgres_url(args.postgres_url, args.require_postgres) as url:
            if url is not None:
                with _postgres_databases(url) as fresh:
                    rows += _backend("postgresql", fresh, args, notes)
    return _summary(rows, notes)


if __name__ == "__main__":
    main()
