"""The privacy ledger: grants (caps) and the append-only record of every debit.

Invariant 3 (no overspend) rests on one statement::

    UPDATE grants SET epsilon_spent_q = epsilon_spent_q + :q, rho_spent_q = ..., ...
     WHERE principal = :p AND dataset = :d AND revoked_at IS NULL
       AND epsilon_spent_q + :q <= epsilon_cap_q AND rho_spent_q + :rq <= rho_cap_q
       AND delta_spent_q + :dq <= delta_cap_q

The database evaluates the condition and the increment atomically, so no
interleaving of jobs, threads, processes or replicas can push ``spent`` past
``cap``. The ledger entry is inserted in the same transaction, so a debit and
its record exist together or not at all.

Invariant 7 (tamper evidence): each entry stores the SHA-256 of the previous
entry's hash and its own canonical JSON. The chain head lives in a one-row
table that each debit locks first (``FOR UPDATE``) and updates with a
compare-and-set on its sequence number, so two writers can never both extend the
chain from the same head.

Refresh windows (invariant 3 still holds): a grant's caps are per period when the
dataset's policy refreshes a measure, and the same statement then also checks
the researcher's lifetime spending of that measure against the policy's
lifetime cap. The period's spending is set back to zero lazily, by the first
debit of a new period, in the same transaction as that debit.

Speed (``bench/ledger_debits.py``): a debit must be durable before its release,
so the yardstick is the database's bare commit rate. The debit's statements are
compiled once and run on the driver's cursor (`budget._prepared`); on
PostgreSQL a debit is one statement of data-modifying CTEs, each step gated on
the previous one's ``RETURNING`` rows. Debits that arrive while another commits
are committed together in the next transaction (group commit, `Ledger._lead`),
each still checked on its own: a refused one is undone inside the transaction
(a dataset-wide refusal takes the grant's charge back; where budgets refresh, a
savepoint also undoes the new period's start), so it leaves no trace.

Budgets are kept in each dataset's own measure: ε for pure-DP datasets, ρ for
zero-concentrated-DP (zCDP) ones, δ for either when group keys are released.
A grant has a cap per measure (0 where the measure does not apply), and one
debit checks all of them in the same statement.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from ._amount import (
    DELTA_QUANTUM,
    QUANTUM,
    from_quanta,
    parse_delta,
    parse_epsilon,
    parse_rho,
    to_quanta,
)
from ._errors import (
    BudgetError,
    BudgetExhausted,
    InvalidAmount,
    LedgerCorrupt,
    NoGrant,
    PolicyViolation,
    StaleVersion,
)
from ._migrate import upgrade
from ._period import next_refresh, period_start
from ._policy import Policy, PolicyVersion
from ._prepared import Prepared

log = logging.getLogger(__name__)

metadata = MetaData()

grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset", String(200), nullable=False),
    Column("principal", String(200), nullable=False),
    Column("epsilon_cap_q", BigInteger, nullable=False),
    Column("epsilon_spent_q", BigInteger, nullable=False, default=0),
    # δ in units of 1e-18; a grant without a δ cap (0) allows only pure-DP releases.
    Column("delta_cap_q", BigInteger, nullable=False, default=0),
    Column("delta_spent_q", BigInteger, nullable=False, default=0),
    # ρ (zCDP datasets) in units of 1e-12, like ε.
    Column("rho_cap_q", BigInteger, nullable=False, default=0, server_default="0"),
    Column("rho_spent_q", BigInteger, nullable=False, default=0, server_default="0"),
    Column("granted_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # After this instant the grant no longer allows releases (NULL: never expires).
    Column("expires_at", DateTime(timezone=True), nullable=True),
    # Spending over all refresh periods, against the policy's lifetime caps.
    Column("lifetime_epsilon_spent_q", BigInteger, nullable=False, server_default="0"),
    Column("lifetime_rho_spent_q", BigInteger, nullable=False, server_default="0"),
    Column("lifetime_delta_spent_q", BigInteger, nullable=False, server_default="0"),
    # When the period that *_spent_q counts began (refreshing datasets only matter).
    Column("period_start", DateTime(timezone=True), nullable=False),
    UniqueConstraint("dataset", "principal", name="uq_grant_dataset_principal"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(20), nullable=False),
    Column("principal", String(200), nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("job_id", String(64), nullable=False),
    Column("release_index", Integer, nullable=False),
    Column("epsilon_q", BigInteger, nullable=False),
    Column("delta_q", BigInteger, nullable=False, default=0),
    Column("rho_q", BigInteger, nullable=False, default=0, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The dataset version a release was computed on, or that a version entry opened
    # (NULL: entries written before versions were recorded).
    Column("dataset_version", Integer, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# The provider's policy, one row per version (the policy's audit trail).
policies = Table(
    "policies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body_json", Text, nullable=False),
    Column("set_by", String(200), nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("dataset", "version", name="uq_policy_version"),
)

# What all researchers together spent on a dataset, against its dataset-wide caps
# (NULL: no cap). A row exists once a policy was set; spending before that is
# counted from the ledger when the row is created.
dataset_budgets = Table(
    "dataset_budgets",
    metadata,
    Column("dataset", String(200), primary_key=True),
    Column("epsilon_cap_q", BigInteger, nullable=True),
    Column("epsilon_spent_q", BigInteger, nullable=False),
    Column("rho_cap_q", BigInteger, nullable=True),
    Column("rho_spent_q", BigInteger, nullable=False),
    Column("delta_cap_q", BigInteger, nullable=True),
    Column("delta_spent_q", BigInteger, nullable=False),
    # The policy's refresh window and per-researcher lifetime caps, read by each debit.
    Column("refresh", String(10), nullable=False, server_default="none"),
    Column("lifetime_epsilon_cap_q", BigInteger, nullable=True),
    Column("lifetime_rho_cap_q", BigInteger, nullable=True),
    Column("lifetime_delta_cap_q", BigInteger, nullable=True),
    # The policy's per-researcher caps, checked by each debit beside the grant's own.
    Column("researcher_epsilon_cap_q", BigInteger, nullable=True),
    Column("researcher_rho_cap_q", BigInteger, nullable=True),
    Column("researcher_delta_cap_q", BigInteger, nullable=True),
    # The dataset version whose upload started the current budget period (NULL:
    # the period runs from the first release). ``*_spent_q`` count from it.
    Column("period_version", Integer, nullable=True),
)

ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

GENESIS_HASH = "0" * 64
_MEASURES = (("epsilon", QUANTUM), ("rho", QUANTUM), ("delta", DELTA_QUANTUM))
_HEAD_RETRIES = 20
#: The most debits one transaction commits (group commit).
_BATCH = 128


@dataclass(eq=False)
class _Pending:
    """A debit waiting in the group-commit queue, and then its outcome."""

    principal: str
    dataset: str
    amount: Decimal
    delta: Decimal
    rho: Decimal
    job_id: str
    release_index: int
    dataset_version: int | None = None
    wake: threading.Event = field(default_factory=threading.Event)
    outcome: LedgerEntry | BaseException | None = None


class _Stale(Exception):
    """The batch failed before writing anything (see ``__cause__``)."""


class _HeadMoved(Exception):
    """Another debit extended the chain first; this transaction rolls back."""


def _driver(conn: Connection, statement: str) -> None:
    """Run a parameterless statement on the DB-API cursor (see `Prepared`)."""
    conn.connection.dbapi_connection.cursor().execute(statement)  # type: ignore[union-attr]


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite returns naive datetimes for what was stored as UTC.
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Balance:
    """A researcher's budget on one dataset."""

    dataset: str
    principal: str
    epsilon_cap: Decimal
    epsilon_spent: Decimal
    delta_cap: Decimal = Decimal(0)
    delta_spent: Decimal = Decimal(0)
    rho_cap: Decimal = Decimal(0)
    rho_spent: Decimal = Decimal(0)
    expires_at: dt.datetime | None = None
    # Over all refresh periods; a cap of None: the policy sets no lifetime cap.
    lifetime_epsilon_spent: Decimal = Decimal(0)
    lifetime_epsilon_cap: Decimal | None = None
    lifetime_rho_spent: Decimal = Decimal(0)
    lifetime_rho_cap: Decimal | None = None
    lifetime_delta_spent: Decimal = Decimal(0)
    lifetime_delta_cap: Decimal | None = None
    refresh: str = "none"
    # When the period's spending of the refreshing measures starts again (None: never).
    next_refresh: dt.datetime | None = None

    def _remaining(
        self, cap: Decimal, spent: Decimal, life_cap: Decimal | None, life: Decimal
    ) -> Decimal:
        left = cap - spent
        if life_cap is not None:
            left = min(left, life_cap - life)
        return max(left, Decimal(0))

    @property
    def rho_remaining(self) -> Decimal:
        """ρ that may be spent now: this period's and the lifetime's, whichever is less."""
        return self._remaining(
            self.rho_cap, self.rho_spent, self.lifetime_rho_cap, self.lifetime_rho_spent
        )

    @property
    def epsilon_remaining(self) -> Decimal:
        """ε that may be spent now: this period's and the lifetime's, whichever is less."""
        return self._remaining(
            self.epsilon_cap,
            self.epsilon_spent,
            self.lifetime_epsilon_cap,
            self.lifetime_epsilon_spent,
        )

    @property
    def delta_remaining(self) -> Decimal:
        """δ that may be spent now: this period's and the lifetime's, whichever is less."""
        return self._remaining(
            self.delta_cap, self.delta_spent, self.lifetime_delta_cap, self.lifetime_delta_spent
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One link of the chain: a debit, or a new version of a dataset.

    ``kind`` is ``"debit"`` for a release's charge; ``"version"`` when a
    provider uploaded a new version of a dataset that keeps its budgets, and
    ``"new_period"`` when the new version starts a new budget period (see
    `Ledger.record_version`). Version entries charge nothing; their
    ``principal`` is the provider who uploaded.
    """

    seq: int
    kind: str
    principal: str
    dataset: str
    job_id: str
    release_index: int
    epsilon: Decimal
    created_at: dt.datetime
    prev_hash: str
    hash: str
    delta: Decimal = Decimal(0)
    rho: Decimal = Decimal(0)
    dataset_version: int | None = None


def _canonical(
    seq: int,
    kind: str,
    principal: str,
    dataset: str,
    job_id: str,
    release_index: int,
    epsilon_q: int,
    created_at: dt.datetime,
    delta_q: int,
    rho_q: int = 0,
    dataset_version: int | None = None,
) -> bytes:
    body: dict[str, object] = {
        "delta_q": delta_q,
        "seq": seq,
        "kind": kind,
        "principal": principal,
        "dataset": dataset,
        "job_id": job_id,
        "release_index": release_index,
        "epsilon_q": epsilon_q,
        # SQLite returns naive datetimes; hash a zone-free UTC form on both sides.
        "created_at": created_at.astimezone(dt.UTC).replace(tzinfo=None).isoformat()
        if created_at.tzinfo
        else created_at.isoformat(),
    }
    if rho_q:  # absent from pure-DP entries, so chains written before ρ still verify
        body["rho_q"] = rho_q
    if dataset_version is not None:  # likewise for entries written before versions
        body["dataset_version"] = dataset_version
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _spent_q(conn: Connection, dataset: str) -> tuple[int, int, int]:
    """Quanta of ε, ρ and δ debited on a dataset in its budget period, from the ledger.

    The period runs from the last version that started a new one (its
    ``new_period`` entry), or from the first release.
    """
    e = ledger_entries.c
    opened = (
        select(func.coalesce(func.max(e.seq), 0))
        .where(e.dataset == dataset, e.kind == "new_period")
        .scalar_subquery()
    )
    row = conn.execute(
        select(
            func.coalesce(func.sum(e.epsilon_q), 0),
            func.coalesce(func.sum(e.rho_q), 0),
            func.coalesce(func.sum(e.delta_q), 0),
        ).where(e.dataset == dataset, e.seq > opened)
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def _live(now: dt.datetime | Any) -> Any:
    """A grant that allows releases now: not revoked, not expired."""
    return and_(
        grants.c.revoked_at.is_(None),
        or_(grants.c.expires_at.is_(None), grants.c.expires_at > now),
    )


#: Asked at every release and listing: built once (see `_live`).
_HAS_GRANT = select(grants.c.id).where(
    grants.c.dataset == bindparam("b_dataset"),
    grants.c.principal == bindparam("b_principal"),
    _live(bindparam("b_now", type_=DateTime(timezone=True))),
)


def _cap(amount: Decimal | None, quantum: Decimal) -> int | None:
    # A cap is a promise to the provider: round it down, never up.
    return None if amount is None else to_quanta(amount, rounding=ROUND_FLOOR, quantum=quantum)


def _chain(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical).hexdigest()


#: "No limit" in the prepared grant statement: far above any spending (quanta).
_NO_CAP = 2**62


class _DebitStatements:
    """The debit's statements, compiled once for the engine's dialect (`Prepared`)."""

    def __init__(self, dialect: Any) -> None:
        g, b = grants.c, dataset_budgets.c
        policy_columns = (
            b.refresh,
            b.period_version,
            *(b[f"lifetime_{m}_cap_q"] for m, _q in _MEASURES),
            *(b[f"researcher_{m}_cap_q"] for m, _q in _MEASURES),
        )
        #: The chain head, locked. On SQLite also the first dataset's policy row
        #: (NULLs: no policy): BEGIN IMMEDIATE took the write lock before this read,
        #: so the row is current. On PostgreSQL a statement that waited for the head
        #: lock re-reads only the locked row, so policies are read after it.
        head = select(ledger_head.c.seq, ledger_head.c.hash)
        if dialect.name == "sqlite":
            head = head.add_columns(*policy_columns).select_from(
                ledger_head.outerjoin(dataset_budgets, b.dataset == bindparam("dataset"))
            )
        self.head = Prepared(
            head.where(ledger_head.c.id == 1).with_for_update(of=ledger_head), dialect
        )
        #: A dataset's policy row, when the head statement did not bring it.
        self.policy = Prepared(
            select(*policy_columns).where(b.dataset == bindparam("dataset")), dialect
        )
        mine = and_(
            g.dataset == bindparam("dataset"),
            g.principal == bindparam("principal"),
            g.revoked_at.is_(None),
            or_(g.expires_at.is_(None), g.expires_at > bindparam("now")),
        )
        self._mine = mine
        self._dialect = dialect
        self._resets: dict[tuple[str, ...], Prepared] = {}
        # Every cap is a parameter (``_NO_CAP`` where the policy sets none), so one
        # statement serves all policies.
        conditions = [mine]
        values: dict[str, Any] = {}
        for measure, _quantum in _MEASURES:
            q = bindparam(f"q_{measure}", type_=BigInteger)
            spent, life = g[f"{measure}_spent_q"], g[f"lifetime_{measure}_spent_q"]
            conditions.append(spent + q <= g[f"{measure}_cap_q"])
            conditions.append(spent + q <= bindparam(f"researcher_{measure}", type_=BigInteger))
            conditions.append(life + q <= bindparam(f"lifetime_{measure}", type_=BigInteger))
            values[f"{measure}_spent_q"] = spent + q
            values[f"lifetime_{measure}_spent_q"] = life + q
        self._grant_update = update(grants).where(*conditions).values(**values)
        self.grant = Prepared(self._grant_update, dialect)
        # Takes a grant charge back when the dataset-wide cap then refuses the debit.
        self.uncharge = Prepared(
            update(grants)
            .where(g.dataset == bindparam("dataset"), g.principal == bindparam("principal"))
            .values(
                **{
                    column: g[column] - bindparam(f"q_{m}", type_=BigInteger)
                    for m, _q in _MEASURES
                    for column in (f"{m}_spent_q", f"lifetime_{m}_spent_q")
                }
            ),
            dialect,
        )
        self._dataset_update = (
            update(dataset_budgets)
            .where(
                b.dataset == bindparam("dataset"),
                *(
                    or_(
                        b[f"{m}_cap_q"].is_(None),
                        b[f"{m}_spent_q"] + bindparam(f"q_{m}", type_=BigInteger)
                        <= b[f"{m}_cap_q"],
                    )
                    for m, _q in _MEASURES
                ),
            )
            .values(
                **{
                    f"{m}_spent_q": b[f"{m}_spent_q"] + bindparam(f"q_{m}", type_=BigInteger)
                    for m, _q in _MEASURES
                }
            )
        )
        self.dataset = Prepared(self._dataset_update, dialect)
        self.entry = Prepared(insert(ledger_entries), dialect)
        self.move_head = Prepared(
            update(ledger_head)
            .where(ledger_head.c.id == 1, ledger_head.c.seq == bindparam("old_seq"))
            .values(seq=bindparam("new_seq"), hash=bindparam("new_hash")),
            dialect,
        )

        #: PostgreSQL runs a debit as one statement (data-modifying CTEs), with and
        #: without a dataset-wide row to count in: one round trip instead of four.
        self.combined: dict[bool, Prepared] | None = None
        if dialect.name == "postgresql":
            self.combined = {
                wide: Prepared(self._combined(wide), dialect) for wide in (True, False)
            }

    def _combined(self, wide: bool) -> Any:
        """One debit in one statement: what each step changed, as counts.

        The grant is charged first; the dataset-wide caps, the entry and the
        head move only if it was (each step's ``WHERE`` requires the previous
        step's ``RETURNING`` rows).
        """
        g, b, h = grants.c, dataset_budgets.c, ledger_head.c
        charged = self._grant_update.returning(g.id).cte("charged")
        steps = [charged]
        gate = [exists(select(charged.c.id))]
        if wide:
            counted = self._dataset_update.where(*gate).returning(b.dataset).cte("counted")
            steps.append(counted)
            gate.append(exists(select(counted.c.dataset)))
        typed: dict[str, Any] = {
            "seq": BigInteger,
            "kind": String(20),
            "principal": String(200),
            "dataset": String(200),
            "job_id": String(64),
            "release_index": Integer,
            "epsilon_q": BigInteger,
            "delta_q": BigInteger,
            "rho_q": BigInteger,
            "created_at": DateTime(timezone=True),
            "dataset_version": Integer,
            "prev_hash": String(64),
            "hash": String(64),
        }
        recorded = (
            insert(ledger_entries)
            .from_select(
                list(typed),
                select(*(bindparam(n, type_=t) for n, t in typed.items())).where(*gate),
            )
            .returning(ledger_entries.c.seq)
            .cte("recorded")
        )
        moved = (
            update(ledger_head)
            .where(h.id == 1, h.seq == bindparam("old_seq"), exists(select(recorded.c.seq)))
            .values(seq=bindparam("seq"), hash=bindparam("hash"))
            .returning(h.seq)
            .cte("moved")
        )
        steps += [recorded, moved]

        def count(step: Any) -> Any:
            return select(func.count()).select_from(step).scalar_subquery()

        counts = [count(step) for step in steps]
        if not wide:
            counts.insert(1, literal(0))
        return select(*counts)

    def reset(self, measures: tuple[str, ...]) -> Prepared:
        """Start a new period for ``measures`` (only where the grant's period is older)."""
        if measures not in self._resets:
            self._resets[measures] = Prepared(
                update(grants)
                .where(self._mine, grants.c.period_start < bindparam("start"))
                .values(period_start=bindparam("start"), **{f"{m}_spent_q": 0 for m in measures}),
                self._dialect,
            )
        return self._resets[measures]


class Ledger:
    """Grants, balances and debits on one SQLAlchemy engine.

    Args:
        engine: from `budget.create_engine`; SQLite or PostgreSQL.
        clock: injectable for tests; must return aware UTC datetimes.
    """

    def __init__(self, engine: Engine, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self._engine = engine
        self._clock = clock
        self._sql = _DebitStatements(engine.dialect)
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._leading = False
        # The leader's connection, kept between batches: a checkout from the pool
        # costs a round trip (PostgreSQL's pre-ping), as much as a statement.
        self._writer: Connection | None = None
        self._pid = os.getpid()
        self._inherited: list[Connection] = []

    def _after_fork(self) -> None:
        """In a forked child: a queue of its own, and never the parent's connection.

        The parent's connection is kept (not closed: closing it would end the
        parent's database session) and never used here.
        """
        self._queue, self._queue_lock, self._leading = [], threading.Lock(), False
        if self._writer is not None:
            self._inherited.append(self._writer)
        self._writer = None
        self._pid = os.getpid()

    def close(self) -> None:
        """Return the debit connection to the pool (before ``engine.dispose()``)."""
        with self._queue_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def create_tables(self) -> None:
        """Create or upgrade the ledger's tables (Alembic) and its chain head."""
        upgrade(self._engine, "budget")
        with self._engine.connect().execution_options(immediate=True) as conn, conn.begin():
            if conn.execute(select(ledger_head.c.id)).first() is None:
                conn.execute(insert(ledger_head).values(id=1, seq=0, hash=GENESIS_HASH))

    def grant(
        self,
        dataset: str,
        principal: str,
        epsilon_cap: object | None,
        *,
        granted_by: str,
        delta_cap: object | None = None,
        rho_cap: object | None = None,
        expires_at: dt.datetime | None = None,
    ) -> Balance:
        """Give ``principal`` access to ``dataset`` with caps on ε (or ρ) and δ.

        Granting again changes the caps given (spending so far is kept; a cap
        below what was already spent simply leaves nothing to spend). A cap
        passed as ``None`` keeps the one in force; a new grant gets the
        policy's per-researcher cap, or 0 without one. A grant
        (or re-grant) lasts until ``expires_at``, or for good without it; a
        re-grant also lifts a revocation.

        Raises:
            InvalidAmount: a cap out of range, or an expiry already past.
            PolicyViolation: a cap above the policy's per-researcher cap.
        """
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidAmount(f"the grant would expire at {expires_at}, which is already past")
        # A cap is a promise to the provider: round it down, never up.
        cap_q = (
            None
            if epsilon_cap is None
            else to_quanta(parse_epsilon(epsilon_cap), rounding=ROUND_FLOOR)
        )
        rho_q = None if rho_cap is None else to_quanta(parse_rho(rho_cap), rounding=ROUND_FLOOR)
        delta_q = (
            None
            if delta_cap is None
            else to_quanta(parse_delta(delta_cap), rounding=ROUND_FLOOR, quantum=DELTA_QUANTUM)
        )
        caps = {
            column: value
            for column, value in (
                ("epsilon_cap_q", cap_q),
                ("rho_cap_q", rho_q),
                ("delta_cap_q", delta_q),
            )
            if value is not None
        }
        with self._engine.connect().execution_options(immediate=True) as conn, conn.begin():
            ceilings = self._researcher_caps(conn, dataset)
            for column, value in caps.items():
                ceiling = ceilings.get(column)
                if ceiling is not None and value > ceiling:
                    measure = column.removesuffix("_cap_q")
                    quantum = DELTA_QUANTUM if measure == "delta" else QUANTUM
                    raise PolicyViolation(
                        f"dataset {dataset!r} allows at most {measure}="
                        f"{from_quanta(ceiling, quantum=quantum)} per researcher (its policy's "
                        f"researcher_cap_{measure}); grant at most that, or raise it first"
                    )
            changed = conn.execute(
                update(grants)
                .where(grants.c.dataset == dataset, grants.c.principal == principal)
                .values(revoked_at=None, granted_by=granted_by, expires_at=expires_at, **caps)
            ).rowcount
            if not changed:
                conn.execute(
                    insert(grants).values(
                        dataset=dataset,
                        principal=principal,
                        epsilon_cap_q=cap_q
                        if cap_q is not None
                        else ceilings.get("epsilon_cap_q", 0),
                        epsilon_spent_q=0,
                        rho_cap_q=rho_q if rho_q is not None else ceilings.get("rho_cap_q", 0),
                        rho_spent_q=0,
                        delta_cap_q=(
                            delta_q if delta_q is not None else ceilings.get("delta_cap_q", 0)
                        ),
                        delta_spent_q=0,
                        granted_by=granted_by,
                        created_at=now,
                        expires_at=expires_at,
                        period_start=now,
                    )
                )
        return self.balance(principal, dataset)

    @staticmethod
    def _researcher_caps(conn: Connection, dataset: str) -> dict[str, int]:
        """The policy's per-researcher caps, keyed like the grant's cap columns."""
        b = dataset_budgets.c
        row = conn.execute(
            select(
                b.researcher_epsilon_cap_q, b.researcher_rho_cap_q, b.researcher_delta_cap_q
            ).where(b.dataset == dataset)
        ).first()
        if row is None:
            return {}
        return {
            f"{measure}_cap_q": value
            for (measure, _q), value in zip(_MEASURES, row, strict=True)
            if value is not None
        }

    def revoke(self, dataset: str, principal: str) -> None:
        """End a grant now: the next release is refused; what was spent stays recorded.

        Raises:
            NoGrant: no live grant to revoke.
        """
        now = self._clock()
        with self._engine.connect().execution_options(immediate=True) as conn, conn.begin():
            ended = conn.execute(
                update(grants)
                .where(grants.c.dataset == dataset, grants.c.principal == principal, _live(now))
                .values(revoked_at=now)
            ).rowcount
        if not ended:
            raise NoGrant(principal, dataset)

    def has_grant(self, principal: str, dataset: str) -> bool:
        """Whether a live grant exists (used to hide datasets from others)."""
        params = {"b_dataset": dataset, "b_principal": principal, "b_now": self._clock()}
        with self._engine.connect() as conn:
            row = conn.execute(_HAS_GRANT, params).first()
        return row is not None

    def balance(self, principal: str, dataset: str) -> Balance:
        """The principal's cap and spending on one dataset.

        Raises:
            NoGrant: no live grant.
        """
        for bal in self.balances(principal, dataset=dataset):
            return bal
        raise NoGrant(principal, dataset)

    def balances(self, principal: str, *, dataset: str | None = None) -> list[Balance]:
        """All live grants of a principal, sorted by dataset."""
        return self._balances(grants.c.principal == principal, dataset)

    def all_balances(self, *, dataset: str | None = None) -> list[Balance]:
        """Every live grant, by dataset then principal (the DPO's and provider's view)."""
        return self._balances(None, dataset)

    def _balances(self, where: Any, dataset: str | None) -> list[Balance]:
        now = self._clock()
        b = dataset_budgets.c
        query = (
            select(
                grants,
                b.refresh,
                b.lifetime_epsilon_cap_q,
                b.lifetime_rho_cap_q,
                b.lifetime_delta_cap_q,
                b.researcher_epsilon_cap_q,
                b.researcher_rho_cap_q,
                b.researcher_delta_cap_q,
            )
            .select_from(grants.outerjoin(dataset_budgets, b.dataset == grants.c.dataset))
            .where(_live(now))
        )
        if where is not None:
            query = query.where(where)
        if dataset is not None:
            query = query.where(grants.c.dataset == dataset)
        with self._engine.connect() as conn:
            rows = (
                conn.execute(query.order_by(grants.c.dataset, grants.c.principal)).mappings().all()
            )
        return [self._balance_of(r, now) for r in rows]

    @staticmethod
    def _balance_of(r: Any, now: dt.datetime) -> Balance:
        refresh = r["refresh"] or "none"
        spent: dict[str, Decimal] = {}
        for measure, quantum in _MEASURES:
            spent_q = r[f"{measure}_spent_q"]
            if (
                refresh != "none"
                and r[f"lifetime_{measure}_cap_q"] is not None
                and _aware(r["period_start"]) < period_start(now, refresh)  # type: ignore[operator]
            ):
                spent_q = 0  # a new period began; the next debit will record it
            spent[measure] = from_quanta(spent_q, quantum=quantum)

        def lifetime_cap(measure: str, quantum: Decimal) -> Decimal | None:
            cap = r[f"lifetime_{measure}_cap_q"]
            return None if cap is None else from_quanta(cap, quantum=quantum)

        def cap(measure: str, quantum: Decimal = QUANTUM) -> Decimal:
            # The policy's per-researcher cap binds grants given above it.
            given, ceiling = r[f"{measure}_cap_q"], r[f"researcher_{measure}_cap_q"]
            return from_quanta(given if ceiling is None else min(given, ceiling), quantum=quantum)

        return Balance(
            dataset=r["dataset"],
            principal=r["principal"],
            epsilon_cap=cap("epsilon"),
            epsilon_spent=spent["epsilon"],
            delta_cap=cap("delta", DELTA_QUANTUM),
            delta_spent=spent["delta"],
            rho_cap=cap("rho"),
            rho_spent=spent["rho"],
            expires_at=_aware(r["expires_at"]),
            lifetime_epsilon_spent=from_quanta(r["lifetime_epsilon_spent_q"]),
            lifetime_epsilon_cap=lifetime_cap("epsilon", QUANTUM),
            lifetime_rho_spent=from_quanta(r["lifetime_rho_spent_q"]),
            lifetime_rho_cap=lifetime_cap("rho", QUANTUM),
            lifetime_delta_spent=from_quanta(r["lifetime_delta_spent_q"], quantum=DELTA_QUANTUM),
            lifetime_delta_cap=lifetime_cap("delta", DELTA_QUANTUM),
            refresh=refresh,
            next_refresh=next_refresh(now, refresh),
        )

    def debit(
        self,
        principal: str,
        dataset: str,
        epsilon: Decimal,
        *,
        job_id: str,
        release_index: int,
        delta: Decimal = Decimal(0),
        rho: Decimal = Decimal(0),
        dataset_version: int | None = None,
    ) -> LedgerEntry:
        """Charge ``epsilon`` (or ``rho``) and ``delta`` atomically and record it.

        A release on a zCDP dataset passes ``epsilon=0`` and its ``rho``.
        ``dataset_version`` is the version of the data the release is computed
        on; it is recorded in the entry. The caller releases only after this
        returns.

        Raises:
            InvalidAmount: nothing to charge, or an amount out of range.
            NoGrant: no live grant (nothing charged).
            BudgetExhausted: the charge would exceed a cap (nothing charged).
            StaleVersion: ``dataset_version`` is older than the version that
                started the dataset's budget period (nothing charged).
        """
        amount = Decimal(0) if epsilon == 0 else parse_epsilon(epsilon)
        rho_amount = Decimal(0) if rho == 0 else parse_rho(rho)
        if amount == 0 and rho_amount == 0:
            raise InvalidAmount("a debit charges a positive epsilon or rho")
        delta_amount = parse_delta(delta)
        mine = _Pending(
            principal,
            dataset,
            amount,
            delta_amount,
            rho_amount,
            job_id,
            release_index,
            dataset_version,
        )
        if os.getpid() != self._pid:
            self._after_fork()
        with self._queue_lock:
            self._queue.append(mine)
            lead = not self._leading
            self._leading = True
        if not lead:
            mine.wake.wait()  # a leader commits it, or hands this thread the lead
        if mine.outcome is None:
            self._lead()
        assert mine.outcome is not None  # a leader's own debit is in its batch
        if isinstance(mine.outcome, BaseException):
            # A batch's failure is one exception shared by its debits: each thread
            # raises it with its own traceback.
            raise mine.outcome.with_traceback(None)
        return mine.outcome

    def _lead(self) -> None:
        """Commit one batch of queued debits, then hand the lead to the next waiter.

        Group commit: while one transaction is being made durable, the debits
        that arrive queue up, and the next leader commits them all in one
        transaction. A debit holds the chain head (and its dataset's row) until
        its commit is on disk, so without batching concurrent debits would wait
        for one disk flush each. Each debit's caps are still checked on its own.
        """
        with self._queue_lock:
            batch = self._queue[:_BATCH]
            del self._queue[:_BATCH]
        try:
            outcomes: list[LedgerEntry | BaseException] = []
            stale = 0
            for _attempt in range(_HEAD_RETRIES):
                try:
                    outcomes = self._debit_batch(self._connection(), batch)
                    break
                except _HeadMoved:
                    continue
                except _Stale as err:
                    stale += 1
                    if stale > 1:
                        raise err.__cause__ or err from None
                    continue  # failed before writing anything: on a new connection
            else:
                failed = RuntimeError("the ledger is too contended to append; retry the release")
                outcomes = [failed] * len(batch)
        except BaseException as err:
            # Rolled back, so nothing was charged; or, if the commit itself failed,
            # perhaps charged: either way no caller releases a value (invariant 2).
            self._drop_connection()
            outcomes = [err] * len(batch)
        finally:
            with self._queue_lock:
                successor = self._queue[0] if self._queue else None
                self._leading = successor is not None
        for pending, outcome in zip(batch, outcomes, strict=True):
            pending.outcome = outcome
            pending.wake.set()
        if successor is not None:
            successor.wake.set()

    def _connection(self) -> Connection:
        if self._writer is None:
            self._writer = self._engine.connect().execution_options(immediate=True)
        return self._writer

    def _drop_connection(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.invalidate()  # its state is unknown: never back to the pool
                writer.close()
            except Exception:  # pragma: no cover - already broken
                log.debug("closing a broken ledger connection failed", exc_info=True)

    def _debit_batch(
        self, conn: Connection, batch: list[_Pending]
    ) -> list[LedgerEntry | BaseException]:
        """Charge and record each debit of ``batch`` in one transaction.

        A refused debit leaves no trace in the transaction (a dataset-wide
        refusal takes the grant's charge back); a database error fails them all.
        """
        # On SQLite, BEGIN IMMEDIATE serialises writers, so the head cannot move.
        # Elsewhere (PostgreSQL, READ COMMITTED) two writers may read the same head;
        # the compare-and-set below makes the loser roll back (its charges too) and retry.
        now = self._clock()
        sql = self._sql
        outcomes: list[LedgerEntry | BaseException] = []
        try:
            transaction = conn.begin()
            # Lock the chain head first (FOR UPDATE; SQLite's BEGIN IMMEDIATE already
            # holds the write lock): debits then extend the chain one at a time.
            head_seq, head_hash, *row = sql.head.run(conn, dataset=batch[0].dataset).fetchone()
        except Exception as err:
            # Nothing was written: the connection may have gone stale between
            # batches (e.g. the database restarted); the leader retries once anew.
            self._drop_connection()
            raise _Stale() from err
        with transaction:
            # The first dataset's policy row, where the head statement brought it.
            policies: dict[str, list[Any]] = {batch[0].dataset: row} if row else {}
            chain = [head_seq, head_hash]  # the head as this transaction extends it
            for d in batch:
                if d.dataset not in policies:
                    found = sql.policy.run(conn, dataset=d.dataset).fetchone()
                    policies[d.dataset] = (
                        list(found) if found else [None] * (2 + 2 * len(_MEASURES))
                    )
                refresh, period_version, *caps = policies[d.dataset]
                if (
                    d.dataset_version is not None
                    and period_version is not None
                    and d.dataset_version < period_version
                ):
                    outcomes.append(StaleVersion(d.dataset, d.dataset_version, period_version))
                    continue
                # Where budgets refresh, the charge may first start a new period: a
                # savepoint lets a refusal undo that too, so it leaves no trace.
                refreshing = refresh not in (None, "none")
                if refreshing:
                    _driver(conn, "SAVEPOINT debit")
                try:
                    entry = self._charge(conn, d, now, refresh, caps, chain)
                except BudgetError as refused:
                    if refreshing:
                        _driver(conn, "ROLLBACK TO SAVEPOINT debit")
                        _driver(conn, "RELEASE SAVEPOINT debit")  # savepoints never nest
                    outcomes.append(refused)
                    continue
                if refreshing:
                    _driver(conn, "RELEASE SAVEPOINT debit")
                outcomes.append(entry)
            if sql.combined is None and chain[0] != head_seq:
                moved = sql.move_head.run(
                    conn, old_seq=head_seq, new_seq=chain[0], new_hash=chain[1]
                ).rowcount
                if moved != 1:  # another writer extended the chain; roll everything back
                    raise _HeadMoved
        return outcomes

    def _charge(
        self,
        conn: Connection,
        d: _Pending,
        now: dt.datetime,
        refresh: str | None,
        caps: list[int | None],
        chain: list[Any],
    ) -> LedgerEntry:
        """Charge one debit's caps and record its entry, extending ``chain`` in place.

        ``refresh`` and ``caps`` (lifetime then per-researcher, per measure) are the
        dataset's policy row, read with the chain head (``refresh`` is None
        without a policy). A refusal raises `BudgetError` having taken back
        what it charged, except a new period's start, which the caller's
        savepoint undoes.
        """
        sql = self._sql
        q = to_quanta(d.amount)
        dq = to_quanta(d.delta, quantum=DELTA_QUANTUM)
        rq = to_quanta(d.rho)
        quanta = (q, rq, dq)
        period = refresh or "none"
        n = len(_MEASURES)
        life_caps = {m: c for (m, _q), c in zip(_MEASURES, caps[:n], strict=True) if c is not None}
        policy_caps = {
            m: c for (m, _q), c in zip(_MEASURES, caps[n:], strict=True) if c is not None
        }
        who = {"dataset": d.dataset, "principal": d.principal, "now": now}
        if period != "none" and life_caps:
            # A new period: its spending of the refreshing measures starts from zero.
            start = period_start(now, period)
            sql.reset(tuple(life_caps)).run(conn, start=start, **who)
        params: dict[str, Any] = dict(who)
        for (measure, _quantum), amount in zip(_MEASURES, quanta, strict=True):
            params[f"q_{measure}"] = amount
            params[f"researcher_{measure}"] = policy_caps.get(measure, _NO_CAP)
            params[f"lifetime_{measure}"] = life_caps.get(measure, _NO_CAP)
        old_seq, prev = chain
        seq = old_seq + 1
        digest = _chain(
            prev,
            _canonical(
                seq,
                "debit",
                d.principal,
                d.dataset,
                d.job_id,
                d.release_index,
                q,
                now,
                dq,
                rq,
                d.dataset_version,
            ),
        )
        entry = {
            "seq": seq,
            "kind": "debit",
            "job_id": d.job_id,
            "release_index": d.release_index,
            "epsilon_q": q,
            "delta_q": dq,
            "rho_q": rq,
            "created_at": now,
            "dataset_version": d.dataset_version,
            "prev_hash": prev,
            "hash": digest,
        }
        wide = refresh is not None  # a policy row: dataset-wide spending is counted
        if sql.combined is not None:
            # PostgreSQL: grant, dataset-wide caps, entry and head in one statement.
            statement = sql.combined[wide]
            charged, counted, _recorded, moved = statement.run(
                conn, **params, **entry, old_seq=old_seq
            ).fetchone()
        else:
            charged = sql.grant.run(conn, **params).rowcount
            counted = (
                sql.dataset.run(conn, dataset=d.dataset, q_epsilon=q, q_rho=rq, q_delta=dq).rowcount
                if charged and wide
                else 0
            )
            moved = 1
        if not charged:
            self._refuse_grant(conn, d, now, period, quanta, life_caps, policy_caps)
        if wide and not counted:
            if refresh == "none":  # (a refreshing caller's savepoint undoes it instead)
                sql.uncharge.run(
                    conn,
                    dataset=d.dataset,
                    principal=d.principal,
                    q_epsilon=q,
                    q_rho=rq,
                    q_delta=dq,
                )
            self._refuse_dataset(conn, d)
        if moved != 1:  # another writer extended the chain; roll everything back
            raise _HeadMoved
        if sql.combined is None:
            sql.entry.run(conn, principal=d.principal, dataset=d.dataset, **entry)
        chain[:] = [seq, digest]
        return LedgerEntry(
            seq,
            "debit",
            d.principal,
            d.dataset,
            d.job_id,
            d.release_index,
            from_quanta(q),
            now,
            prev,
            digest,
            from_quanta(dq, quantum=DELTA_QUANTUM),
            from_quanta(rq),
            d.dataset_version,
        )

    @staticmethod
    def _refuse_grant(
        conn: Connection,
        d: _Pending,
        now: dt.datetime,
        period: str,
        quanta: tuple[int, int, int],
        life_caps: dict[str, int],
        policy_caps: dict[str, int],
    ) -> None:
        """Say why the grant refused a debit (the slow path: a refusal is rare)."""
        g = grants.c
        mine = and_(g.dataset == d.dataset, g.principal == d.principal, _live(now))
        row = conn.execute(select(grants).where(mine)).first()
        if row is None:
            raise NoGrant(d.principal, d.dataset)
        refreshes_at = next_refresh(now, period) if life_caps else None
        asked = (d.amount, d.rho, d.delta)
        for (measure, quantum), q, amount in zip(_MEASURES, quanta, asked, strict=True):
            spent, cap = getattr(row, f"{measure}_spent_q"), getattr(row, f"{measure}_cap_q")
            cap = min(cap, policy_caps.get(measure, cap))
            life = getattr(row, f"lifetime_{measure}_spent_q")
            if measure in life_caps and life + q > life_caps[measure]:
                left = from_quanta(max(life_caps[measure] - life, 0), quantum=quantum)
                raise BudgetExhausted(d.dataset, amount, left, measure, lifetime=True)
            if spent + q > cap:
                left = from_quanta(max(cap - spent, 0), quantum=quantum)
                raise BudgetExhausted(
                    d.dataset,
                    amount,
                    left,
                    measure,
                    refreshes_at=refreshes_at if measure in life_caps else None,
                )
        # The grant changed between the charge and this look (a re-grant raised its
        # cap): retry the batch rather than fail it.
        raise _HeadMoved

    @staticmethod
    def _refuse_dataset(conn: Connection, d: _Pending) -> None:
        """Say which dataset-wide cap refused a debit."""
        b = dataset_budgets.c
        row = conn.execute(select(dataset_budgets).where(b.dataset == d.dataset)).one()
        for measure, asked, cap, spent, quantum in (
            ("epsilon", d.amount, row.epsilon_cap_q, row.epsilon_spent_q, QUANTUM),
            ("rho", d.rho, row.rho_cap_q, row.rho_spent_q, QUANTUM),
            ("delta", d.delta, row.delta_cap_q, row.delta_spent_q, DELTA_QUANTUM),
        ):
            if cap is not None and spent + to_quanta(asked, quantum=quantum) > cap:
                left = from_quanta(max(cap - spent, 0), quantum=quantum)
                raise BudgetExhausted(d.dataset, asked, left, measure, dataset_wide=True)
        raise RuntimeError("dataset-wide debit refused without a cap exceeded")  # pragma: no cover

    # --- policies ---------------------------------------------------------------------

    def set_policy(self, dataset: str, policy: Policy, *, set_by: str) -> PolicyVersion:
        """Record a new version of a dataset's policy and apply its dataset-wide caps.

        Both in one transaction. Spending made before the first policy is counted
        from the ledger, so a cap set late still bounds everything ever released.
        """
        now = self._clock()
        caps = {
            "epsilon_cap_q": _cap(policy.dataset_cap_epsilon, QUANTUM),
            "rho_cap_q": _cap(policy.dataset_cap_rho, QUANTUM),
            "delta_cap_q": _cap(policy.dataset_cap_delta, DELTA_QUANTUM),
            "refresh": policy.refresh,
            "lifetime_epsilon_cap_q": _cap(policy.lifetime_cap_epsilon, QUANTUM),
            "lifetime_rho_cap_q": _cap(policy.lifetime_cap_rho, QUANTUM),
            "lifetime_delta_cap_q": _cap(policy.lifetime_cap_delta, DELTA_QUANTUM),
            "researcher_epsilon_cap_q": _cap(policy.researcher_cap_epsilon, QUANTUM),
            "researcher_rho_cap_q": _cap(policy.researcher_cap_rho, QUANTUM),
            "researcher_delta_cap_q": _cap(policy.researcher_cap_delta, DELTA_QUANTUM),
        }
        with self._engine.connect().execution_options(immediate=True) as conn, conn.begin():
            # Serialise with debits (which lock the head first), so the spending
            # counted below cannot miss a concurrent one.
            conn.execute(select(ledger_head.c.seq).where(ledger_head.c.id == 1).with_for_update())
            last = conn.execute(
                select(func.max(policies.c.version)).where(policies.c.dataset == dataset)
            ).scalar()
            version = (last or 0) + 1
            conn.execute(
                insert(policies).values(
                    dataset=dataset,
                    version=version,
                    body_json=json.dumps(policy.to_dict(), sort_keys=True),
                    set_by=set_by,
                    set_at=now,
                )
            )
            before = conn.execute(
                select(dataset_budgets.c.refresh).where(dataset_budgets.c.dataset == dataset)
            ).scalar()
            if policy.refresh != (before or "none"):
                # A new window counts from now: the spending of each grant's current
                # period stays in it rather than being forgiven at once.
                conn.execute(
                    update(grants)
                    .where(
                        grants.c.dataset == dataset,
                        grants.c.period_start < period_start(now, policy.refresh),
                    )
                    .values(period_start=now)
                )
            changed = conn.execute(
                update(dataset_budgets).where(dataset_budgets.c.dataset == dataset).values(**caps)
            ).rowcount
            if not changed:
                spent = _spent_q(conn, dataset)
                conn.execute(
                    insert(dataset_budgets).values(
                        dataset=dataset,
                        epsilon_spent_q=spent[0],
                        rho_spent_q=spent[1],
                        delta_spent_q=spent[2],
                        **caps,
                    )
                )
        return PolicyVersion(dataset, version, policy, set_by, now)

    # --- dataset versions -------------------------------------------------------------

    def record_version(
        self,
        conn: Connection,
        dataset: str,
        version: int,
        *,
        new_period: bool,
        by: str,
    ) -> LedgerEntry:
        """Chain a dataset's new version and, if asked, start a new budget period.

        Runs in the caller's transaction on ``conn`` (the catalog's switch to
        the new file), so the version and its budgets change together or not
        at all; ``conn`` must be a writer (``immediate=True`` on SQLite). The
        chain head is locked first, so debits wait for the switch: a release
        computed on an older version that arrives after a new period started
        is refused (`StaleVersion`), never charged to the new period.

        A new period sets every researcher's spending for the period, and the
        dataset-wide spending, back to zero; the lifetime spending behind the
        policy's lifetime caps is kept, so those caps still bound every period.

        Returns:
            The chain entry: kind ``"new_period"`` or ``"version"``.
        """
        now = self._clock()
        seq, prev = conn.execute(
            select(ledger_head.c.seq, ledger_head.c.hash)
            .where(ledger_head.c.id == 1)
            .with_for_update()
        ).one()
        kind = "new_period" if new_period else "version"
        seq += 1
        digest = _chain(prev, _canonical(seq, kind, by, dataset, "", 0, 0, now, 0, 0, version))
        conn.execute(
            insert(ledger_entries).values(
                seq=seq,
                kind=kind,
                principal=by,
                dataset=dataset,
                job_id="",
                release_index=0,
                epsilon_q=0,
                delta_q=0,
                rho_q=0,
                created_at=now,
                dataset_version=version,
                prev_hash=prev,
                hash=digest,
            )
        )
        conn.execute(update(ledger_head).where(ledger_head.c.id == 1).values(seq=seq, hash=digest))
        if new_period:
            conn.execute(
                update(grants)
                .where(grants.c.dataset == dataset)
                .values(period_start=now, **{f"{m}_spent_q": 0 for m, _q in _MEASURES})
            )
            zero = {f"{m}_spent_q": 0 for m, _q in _MEASURES}
            changed = conn.execute(
                update(dataset_budgets)
                .where(dataset_budgets.c.dataset == dataset)
                .values(period_version=version, **zero)
            ).rowcount
            if not changed:  # no policy yet: a row for the debits' version check
                conn.execute(
                    insert(dataset_budgets).values(
                        dataset=dataset, period_version=version, refresh="none", **zero
                    )
                )
        return LedgerEntry(
            seq, kind, by, dataset, "", 0, Decimal(0), now, prev, digest, dataset_version=version
        )

    def policy(self, dataset: str) -> PolicyVersion | None:
        """The policy in force (its latest version), or None if none was ever set."""
        history = self.policy_history(dataset, latest=True)
        return history[0] if history else None

    def policy_history(self, dataset: str, *, latest: bool = False) -> list[PolicyVersion]:
        """Every version of a dataset's policy, newest first."""
        query = (
            select(policies)
            .where(policies.c.dataset == dataset)
            .order_by(policies.c.version.desc())
        )
        if latest:
            query = query.limit(1)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            PolicyVersion(
                r["dataset"],
                r["version"],
                Policy.from_dict(json.loads(r["body_json"])),
                r["set_by"],
                r["set_at"],
            )
            for r in rows
        ]

    def dataset_spent(self, dataset: str) -> tuple[Decimal, Decimal, Decimal]:
        """What all researchers together spent on a dataset in its budget period: (ε, ρ, δ).

        Exact. The period runs from the last version that started a new one
        (`record_version`), or from the first release.
        """
        with self._engine.connect() as conn:
            spent = _spent_q(conn, dataset)
        return (
            from_quanta(spent[0]),
            from_quanta(spent[1]),
            from_quanta(spent[2], quantum=DELTA_QUANTUM),
        )

    def entries(
        self,
        *,
        job_id: str | None = None,
        principal: str | None = None,
        dataset: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[LedgerEntry]:
        """Ledger entries in chain order, filtered (``since`` inclusive, ``until`` not).

        ``after_seq`` and ``limit`` page through them: pass the last entry's
        ``seq`` to get the next page.
        """
        e = ledger_entries.c
        query = select(ledger_entries).where(e.seq > after_seq).order_by(e.seq)
        for column, value in ((e.job_id, job_id), (e.principal, principal), (e.dataset, dataset)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(e.created_at >= since)
        if until is not None:
            query = query.where(e.created_at < until)
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as conn:
            return [
                LedgerEntry(
                    seq=r["seq"],
                    kind=r["kind"],
                    principal=r["principal"],
                    dataset=r["dataset"],
                    job_id=r["job_id"],
                    release_index=r["release_index"],
                    epsilon=from_quanta(r["epsilon_q"]),
                    created_at=_aware(r["created_at"]),  # type: ignore[arg-type]
                    prev_hash=r["prev_hash"],
                    hash=r["hash"],
                    delta=from_quanta(r["delta_q"], quantum=DELTA_QUANTUM),
                    rho=from_quanta(r["rho_q"]),
                    dataset_version=r["dataset_version"],
                )
                for r in conn.execute(query).mappings()
            ]

    def head(self) -> tuple[int, str]:
        """The chain head (last entry's number and hash), to record outside for anchoring."""
        with self._engine.connect() as conn:
            row = conn.execute(select(ledger_head.c.seq, ledger_head.c.hash)).one()
        return int(row.seq), str(row.hash)

    def verify(self, expected_head: str | None = None) -> str:
        """Walk the chain from genesis; return the head hash (see `check`)."""
        return self.check(expected_head)[1]

    def check(self, expected_head: str | None = None) -> tuple[int, str]:
        """Walk the chain from genesis; return the number of entries and the head hash.

        Args:
            expected_head: a head hash recorded earlier (`head`). It must still be
                in the chain: removing entries from the end and rewriting the head
                row consistently is otherwise undetectable from inside.

        Raises:
            LedgerCorrupt: naming the first entry whose hash or link is wrong, a
                head that does not match the last entry (truncated tail), or a
                recorded head that the chain no longer contains.
        """
        prev = GENESIS_HASH
        seen = {GENESIS_HASH}
        expected_seq = 1
        with self._engine.connect() as conn:
            head = conn.execute(select(ledger_head.c.seq, ledger_head.c.hash)).one()
            rows = conn.execute(select(ledger_entries).order_by(ledger_entries.c.seq)).mappings()
            for r in rows:
                if r["seq"] != expected_seq:
                    raise LedgerCorrupt(expected_seq, "entry missing")
                if r["prev_hash"] != prev:
                    raise LedgerCorrupt(r["seq"], "link to previous entry broken")
                digest = _chain(
                    prev,
                    _canonical(
                        r["seq"],
                        r["kind"],
                        r["principal"],
                        r["dataset"],
                        r["job_id"],
                        r["release_index"],
                        r["epsilon_q"],
                        r["created_at"],
                        r["delta_q"],
                        r["rho_q"],
                        r["dataset_version"],
                    ),
                )
                if digest != r["hash"]:
                    raise LedgerCorrupt(r["seq"], "content does not match its hash")
                prev = digest
                seen.add(digest)
                expected_seq += 1
        if head.seq != expected_seq - 1 or head.hash != prev:
            raise LedgerCorrupt(
                expected_seq, f"chain ends at entry {expected_seq - 1} but head is {head.seq}"
            )
        if expected_head is not None and expected_head not in seen:
            raise LedgerCorrupt(
                expected_seq,
                f"the recorded head {expected_head} is not in the chain: entries after it "
                "were removed or rewritten",
            )
        return expected_seq - 1, prev
