"""Unit tests of the privacy-budget ledger (``budget``), on real SQLite files and a real
PostgreSQL server (each test taking the ``engine`` fixture runs on both).

Invariants guarded here:

* amounts are exact: user input is parsed to the decimal the user wrote, stored
  as integer quanta rounded *up* (the ledger may overcharge a hair, never undercharge);
* no overspend: no sequence or interleaving of debits pushes ``spent`` past ``cap``;
* a refused debit charges nothing and records nothing;
* tamper evidence: the hash chain detects edited, deleted and truncated entries.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import multiprocessing
import tempfile
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

import budget
from budget import (
    MAX_EPSILON,
    QUANTUM,
    BudgetExhausted,
    InvalidAmount,
    Ledger,
    LedgerCorrupt,
    LedgerEntry,
    NoGrant,
    Policy,
    PolicyViolation,
    from_quanta,
    parse_epsilon,
    to_quanta,
)

DS = "stays"
ALICE = "alice"
GENESIS = "0" * 64


def _open(path: Path) -> tuple[Engine, Ledger]:
    engine = budget.create_engine(f"sqlite:///{path}")
    ledger = Ledger(engine)
    ledger.create_tables()
    return engine, ledger


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """Every test using it runs on SQLite and on PostgreSQL (see conftest)."""
    eng = budget.create_engine(database_url)
    Ledger(eng).create_tables()
    yield eng
    eng.dispose()


@pytest.fixture
def ledger(engine: Engine) -> Ledger:
    return Ledger(engine)


def _debit(
    ledger: Ledger,
    amount: str,
    *,
    principal: str = ALICE,
    dataset: str = DS,
    job_id: str = "job",
    release_index: int = 0,
) -> LedgerEntry:
    return ledger.debit(
        principal, dataset, Decimal(amount), job_id=job_id, release_index=release_index
    )


# --------------------------------------------------------------------------- amounts


# Floats mean the number the user typed (via repr), not their binary approximation.
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, "0.1"),
        (0.3, "0.3"),
        (2.5, "2.5"),
        (1e-12, "1E-12"),
        (0.30000000000000004, "0.30000000000000004"),
        (1, "1"),
        (1_000_000, "1000000"),
        ("2", "2"),
        (" 0.25 ", "0.25"),
        ("1e-12", "1E-12"),
        (Decimal("0.125"), "0.125"),
        (QUANTUM, "1E-12"),
        (MAX_EPSILON, "1000000"),
    ],
)
def test_parse_epsilon_accepts_exact_positive_numbers(value: object, expected: str) -> None:
    parsed = parse_epsilon(value)
    assert isinstance(parsed, Decimal)
    assert parsed == Decimal(expected)
    assert str(parsed) == expected


def test_parse_epsilon_float_is_not_binary_approximation() -> None:
    # Guards exact accounting: 0.1 + 0.2 of user-written floats is exactly 0.3.
    assert parse_epsilon(0.1) != Decimal.from_float(0.1)
    assert parse_epsilon(0.1) + parse_epsilon(0.2) == Decimal("0.3")


# Anything that is not a finite number in [QUANTUM, MAX_EPSILON] is refused up front.
@pytest.mark.parametrize(
    "value",
    [
        0,
        0.0,
        -0.0,
        "0",
        "-0",
        Decimal(0),
        Decimal("-0"),
        -1,
        -0.1,
        "-0.5",
        Decimal("-1"),
        math.nan,
        math.inf,
        -math.inf,
        "nan",
        "NaN",
        "inf",
        "-Infinity",
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        True,
        False,
        None,
        [1],
        (1,),
        {"e": 1},
        object(),
        complex(1, 0),
        b"1",
        "",
        "  ",
        "abc",
        "1.2.3",
        "0x10",
        "1000000.000000000001",
        1_000_001,
        1e7,
        Decimal("1e18"),
        "1e-13",
        1e-13,
        Decimal("9.99e-13"),
        5e-324,
    ],
)
def test_parse_epsilon_rejects_invalid(value: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_epsilon(value)


def test_invalid_amount_is_a_budget_error() -> None:
    with pytest.raises(budget.BudgetError):
        parse_epsilon(-1)


# Stored quanta always cover the requested amount (round up, never down).
@pytest.mark.parametrize(
    ("amount", "quanta"),
    [
        ("0.5", 500_000_000_000),
        ("1", 10**12),
        ("1E-12", 1),
        ("1.5E-12", 2),
        ("1.0000000000001", 10**12 + 1),
        ("0.1000000000000000001", 10**11 + 1),
        ("1000000", 10**18),
        ("999999.9999999999999", 10**18),
    ],
)
def test_to_quanta_rounds_up(amount: str, quanta: int) -> None:
    assert to_quanta(Decimal(amount)) == quanta


# Same invariant with more significant digits than the default decimal context (28):
# the fractional quantum must still be charged, not lost to context rounding.
@pytest.mark.parametrize(
    "amount",
    [
        "1.0000000000000000000000000001",  # 1 + 1e-28
        "0.1000000000000000000000000000001",  # 0.1 + 1e-31
    ],
)
def test_to_quanta_rounds_up_beyond_context_precision(amount: str) -> None:
    value = parse_epsilon(amount)  # a valid epsilon
    q = to_quanta(value)
    assert Decimal(q) * QUANTUM >= value, f"{amount} stored as {q} quanta: undercharged"


def test_from_quanta_plain_notation() -> None:
    assert str(from_quanta(10 * 10**12)) == "10"
    assert str(from_quanta(10**18)) == "1000000"
    assert str(from_quanta(500_000_000_000)) == "0.5"
    assert from_quanta(1) == QUANTUM
    assert from_quanta(0) == 0


@settings(max_examples=200)
@given(
    st.decimals(
        min_value=QUANTUM, max_value=MAX_EPSILON, places=12, allow_nan=False, allow_infinity=False
    )
)
def test_quanta_round_trip_is_exact(amount: Decimal) -> None:
    # Any amount with <= 12 decimal places survives storage exactly.
    assert from_quanta(to_quanta(amount)) == amount


# --------------------------------------------------------------------------- grants


# A grant sets a cap; balances are per (principal, dataset) and start at zero spending.
def test_grant_and_balance(ledger: Ledger) -> None:
    bal = ledger.grant(DS, ALICE, "2.5", granted_by="provider")
    assert bal == budget.Balance(DS, ALICE, Decimal("2.5"), Decimal(0))
    assert bal.epsilon_remaining == Decimal("2.5")
    assert ledger.balance(ALICE, DS) == bal
    assert ledger.has_grant(ALICE, DS)
    assert not ledger.has_grant(ALICE, "other")
    assert not ledger.has_grant("bob", DS)


def test_balances_lists_live_grants_sorted_by_dataset(ledger: Ledger) -> None:
    ledger.grant("zeta", ALICE, 1, granted_by="p")
    ledger.grant("alpha", ALICE, 0.5, granted_by="p")
    ledger.grant("alpha", "bob", 3, granted_by="p")
    assert [(b.dataset, b.epsilon_cap) for b in ledger.balances(ALICE)] == [
        ("alpha", Decimal("0.5")),
        ("zeta", Decimal("1")),
    ]
    assert ledger.balances(ALICE, dataset="zeta") == [ledger.balance(ALICE, "zeta")]
    assert ledger.balances(ALICE, dataset="missing") == []
    assert ledger.balances("nobody") == []


def test_balance_without_grant_raises_no_grant(ledger: Ledger) -> None:
    with pytest.raises(NoGrant) as exc:
        ledger.balance(ALICE, DS)
    assert exc.value.principal == ALICE
    assert exc.value.dataset == DS


def test_grant_rejects_invalid_cap_and_creates_nothing(ledger: Ledger) -> None:
    for bad in (0, -1, "nan", math.inf, True):
        with pytest.raises(InvalidAmount):
            ledger.grant(DS, ALICE, bad, granted_by="p")
    assert not ledger.has_grant(ALICE, DS)


# Re-granting changes the cap but never forgives what was already spent.
def test_regrant_changes_cap_and_keeps_spending(ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, 1, granted_by="p")
    _debit(ledger, "0.75")
    raised = ledger.grant(DS, ALICE, 3, granted_by="dpo")
    assert raised == budget.Balance(
        DS, ALICE, Decimal(3), Decimal("0.75"), lifetime_epsilon_spent=Decimal("0.75")
    )
    assert raised.epsilon_remaining == Decimal("2.25")
    assert len(ledger.balances(ALICE)) == 1  # updated in place, not duplicated

    lowered = ledger.grant(DS, ALICE, "0.5", granted_by="dpo")  # below what was spent
    assert lowered.epsilon_spent == Decimal("0.75")
    assert lowered.epsilon_remaining == 0
    with pytest.raises(BudgetExhausted) as exc:
        _debit(ledger, "0.000001")
    assert exc.value.remaining == 0


# --------------------------------------------------------------------------- debits


# Quanta arithmetic is exact: ten debits of 0.1 spend exactly 1, and not a hair more.
def test_ten_tenths_exhaust_a_cap_of_one_exactly(ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, 1, granted_by="p")
    for i in range(10):
        _debit(ledger, "0.1", release_index=i)
    bal = ledger.balance(ALICE, DS)
    assert bal.epsilon_spent == Decimal("1")
    assert str(bal.epsilon_spent) == "1"
    assert bal.epsilon_remaining == 0
    with pytest.raises(BudgetExhausted):
        _debit(ledger, "0.1", release_index=10)
    assert ledger.balance(ALICE, DS).epsilon_spent == Decimal("1")
    assert len(ledger.entries()) == 10


def test_float_debits_are_exact(ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, 0.3, granted_by="p")
    ledger.debit(ALICE, DS, 0.1, job_id="j", release_index=0)  # type: ignore[arg-type]
    ledger.debit(ALICE, DS, 0.2, job_id="j", release_index=1)  # type: ignore[arg-type]
    assert ledger.balance(ALICE, DS).epsilon_remaining == 0


# A debit that does not fit is refused with the numbers, and charges/records nothing.
def test_budget_exhausted_charges_nothing(ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, 1, granted_by="p")
    _debit(ledger, "0.8")
    before_balance = ledger.balance(ALICE, DS)
    before_entries = ledger.entries()
    before_head = ledger.verify()

    with pytest.raises(BudgetExhausted) as exc:
        _debit(ledger, "0.3", job_id="too-big")
    message = str(exc.value)
    assert "0.3" in message  # requested
    assert "0.2" in message  # remaining
    assert "nothing was charged" in message
    assert exc.value.requested == Decimal("0.3")
    assert exc.value.remaining == Decimal("0.2")
    assert exc.value.dataset == DS

    assert ledger.balance(ALICE, DS) == before_balance
    assert ledger.entries() == before_entries
    assert ledger.entries(job_id="too-big") == []
    assert ledger.verify() == before_head

    _debit(ledger, "0.2")  # what remains can still be spent exactly
    assert ledger.balance(ALICE, DS).epsilon_remaining == 0


# The last quantum counts: a debit one quantum over the remaining budget is refused.
def test_debit_one_quantum_over_is_refused(ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, 1, granted_by="p")
    with pytest.raises(BudgetExhausted):
        _debit(ledger, "1.000000000001")
    _debit(ledger, "1")
    assert ledger.balance(ALICE, DS).epsilon_spent == 1


# Same, for an amount finer than the decimal context: it exceeds the cap, so it must be refused.
def test_debit_slightly_over_cap_with_many_digits_is_refused(ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, 1, granted_by="p")
    with pytest.raises(BudgetExhausted):
        _debit(ledger, "1.0000000000000000000000000001")
    assert ledger.entries() == []


def test_debit_without_grant_raises_no_grant(ledger: Ledger) -> None:
    ledger.grant("other", ALICE, 1, granted_by="p")
    with pytest.raises(NoGrant):
        _debit(ledger, "0.1", principal="bob")
    with pytest.raises(NoGrant):
        _debit(ledger, "0.1", dataset="missing")
    assert ledger.entries() == []
    assert ledger.verify() == GENESIS


def test_debit_rejects_invalid_amount(ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, 1, granted_by="p")
    for bad in ("0", "-0.1", "NaN", "1e-13"):
        with pytest.raises(InvalidAmount):
            _debit(ledger, bad)
    assert ledger.balance(ALICE, DS).epsilon_spent == 0
    assert ledger.entries() == []


# Every successful debit leaves exactly one entry describing it.
def test_entries_record_each_debit(ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, 5, granted_by="p")
    ledger.grant("other", "bob", 5, granted_by="p")
    returned = [
        _debit(ledger, "0.5", job_id="job-a", release_index=0),
        _debit(ledger, "0.25", job_id="job-a", release_index=1),
        _debit(ledger, "1.5", principal="bob", dataset="other", job_id="job-b", release_index=0),
    ]
    entries = ledger.entries()
    assert all(isinstance(e, LedgerEntry) for e in entries)
    assert [
        (e.seq, e.kind, e.principal, e.dataset, e.job_id, e.release_index, e.epsilon)
        for e in entries
    ] == [
        (1, "debit", ALICE, DS, "job-a", 0, Decimal("0.5")),
        (2, "debit", ALICE, DS, "job-a", 1, Decimal("0.25")),
        (3, "debit", "bob", "other", "job-b", 0, Decimal("1.5")),
    ]
    # What debit() returned is what was stored.
    assert [(e.seq, e.epsilon, e.prev_hash, e.hash) for e in entries] == [
        (r.seq, r.epsilon, r.prev_hash, r.hash) for r in returned
    ]
    assert [e.seq for e in ledger.entries(job_id="job-a")] == [1, 2]
    assert [e.seq for e in ledger.entries(job_id="job-b")] == [3]
    assert ledger.entries(job_id="nope") == []
    assert ledger.balance(ALICE, DS).epsilon_spent == Decimal("0.75")
    assert ledger.balance("bob", "other").epsilon_spent == Decimal("1.5")


# --------------------------------------------------------------------------- concurrency


# No interleaving of threads can overspend: with cap 2.5, exactly 25 of 64 debits of 0.1 pass.
def test_concurrent_thread_debits_never_overspend(engine: Engine) -> None:
    ledger = Ledger(engine)
    ledger.grant(DS, ALICE, "2.5", granted_by="p")
    n_threads = 64
    barrier = threading.Barrier(n_threads)
    results: list[object] = [None] * n_threads

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            results[i] = _debit(ledger, "0.1", job_id=f"t{i}")
        except Exception as exc:  # collected and checked below
            results[i] = exc

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    ok = [r for r in results if isinstance(r, LedgerEntry)]
    refused = [r for r in results if isinstance(r, BudgetExhausted)]
    other = [r for r in results if not isinstance(r, (LedgerEntry, BudgetExhausted))]
    assert other == []
    assert len(ok) == 25
    assert len(refused) == n_threads - 25
    assert ledger.balance(ALICE, DS).epsilon_spent == Decimal("2.5")
    entries = ledger.entries()
    assert len(entries) == 25
    assert sorted(e.seq for e in entries) == list(range(1, 26))
    assert sum(e.epsilon for e in entries) == Decimal("2.5")
    assert ledger.verify() == entries[-1].hash


def _process_worker(url: str, start: object, out: object, worker: int) -> None:
    """Child of the multi-process test: its own engine, 8 debits of 0.25."""
    engine = budget.create_engine(url)
    ledger = Ledger(engine)
    outcomes = []
    start.wait()  # type: ignore[attr-defined]
    for i in range(8):
        try:
            ledger.debit(ALICE, DS, Decimal("0.25"), job_id=f"p{worker}", release_index=i)
            outcomes.append("ok")
        except BudgetExhausted:
            outcomes.append("exhausted")
        except Exception as exc:
            outcomes.append(f"error: {exc!r}")
    engine.dispose()
    out.put(outcomes)  # type: ignore[attr-defined]


# No interleaving of processes (separate engines, one file) can overspend either.
def test_concurrent_process_debits_never_overspend(database_url: str, ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, 5, granted_by="p")
    ctx = multiprocessing.get_context("spawn")
    n_procs = 8
    start = ctx.Barrier(n_procs)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(database_url, start, out, w))
        for w in range(n_procs)
    ]
    for p in procs:
        p.start()
    outcomes = [o for _ in procs for o in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0

    assert [o for o in outcomes if o not in ("ok", "exhausted")] == []
    assert outcomes.count("ok") == 20
    assert outcomes.count("exhausted") == 64 - 20
    assert ledger.balance(ALICE, DS).epsilon_spent == Decimal(5)
    entries = ledger.entries()
    assert len(entries) == 20
    assert ledger.verify() == entries[-1].hash


# --------------------------------------------------------------------------- hash chain


# verify() walks the chain and returns the head, which moves with every debit.
def test_verify_returns_head_that_changes_with_each_debit(ledger: Ledger) -> None:
    assert ledger.verify() == GENESIS
    ledger.grant(DS, ALICE, 10, granted_by="p")
    heads = [ledger.verify()]
    for i in range(5):
        entry = _debit(ledger, "0.5", release_index=i)
        assert entry.prev_hash == heads[-1]
        head = ledger.verify()
        assert head == entry.hash
        heads.append(head)
    assert len(set(heads)) == len(heads)
    entries = ledger.entries()
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))


def _chain_of(ledger: Ledger, n: int) -> None:
    ledger.grant(DS, ALICE, 10, granted_by="p")
    for i in range(n):
        _debit(ledger, "0.5", release_index=i)
    ledger.verify()


# Editing an amount in place is detected at that entry.
def test_tampered_epsilon_is_detected(engine: Engine, ledger: Ledger) -> None:
    _chain_of(ledger, 4)
    with engine.begin() as conn:
        conn.execute(text("UPDATE ledger_entries SET epsilon_q = epsilon_q - 1 WHERE seq = 3"))
    with pytest.raises(LedgerCorrupt) as exc:
        ledger.verify()
    assert exc.value.seq == 3
    assert "3" in str(exc.value)


# Rewriting a stored hash breaks that entry (and the link of the next one).
def test_tampered_hash_is_detected(engine: Engine, ledger: Ledger) -> None:
    _chain_of(ledger, 3)
    with engine.begin() as conn:
        conn.execute(text("UPDATE ledger_entries SET hash = :h WHERE seq = 2"), {"h": "f" * 64})
    with pytest.raises(LedgerCorrupt) as exc:
        ledger.verify()
    assert exc.value.seq == 2


# Removing an entry from the middle is detected.
def test_deleted_middle_entry_is_detected(engine: Engine, ledger: Ledger) -> None:
    _chain_of(ledger, 4)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE seq = 2"))
    with pytest.raises(LedgerCorrupt) as exc:
        ledger.verify()
    assert exc.value.seq == 2


# Removing the newest entry (tail truncation) is detected via the stored head.
def test_truncated_tail_is_detected(engine: Engine, ledger: Ledger) -> None:
    _chain_of(ledger, 4)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE seq = 4"))
    with pytest.raises(LedgerCorrupt):
        ledger.verify()


# --------------------------------------------------------------------------- property


_amounts = st.decimals(
    min_value=Decimal("0.000001"),
    max_value=Decimal(2),
    places=6,
    allow_nan=False,
    allow_infinity=False,
)


# For any sequence of debits: refused iff it would exceed what remains; spent == sum of
# successes exactly; spent never exceeds the cap.
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cap=_amounts.map(lambda d: d * 3), amounts=st.lists(_amounts, min_size=1, max_size=15))
def test_property_debits_never_exceed_cap(cap: Decimal, amounts: list[Decimal]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine, ledger = _open(Path(tmp) / "l.db")
        try:
            ledger.grant(DS, ALICE, cap, granted_by="p")
            succeeded = Decimal(0)
            for i, amount in enumerate(amounts):
                remaining = cap - succeeded
                try:
                    ledger.debit(ALICE, DS, amount, job_id="h", release_index=i)
                except BudgetExhausted as exc:
                    assert amount > remaining, f"refused {amount} with {remaining} left"
                    assert exc.remaining == remaining
                else:
                    assert amount <= remaining, f"accepted {amount} with {remaining} left"
                    succeeded += amount
                bal = ledger.balance(ALICE, DS)
                assert bal.epsilon_spent == succeeded
                assert bal.epsilon_spent <= cap
            assert sum((e.epsilon for e in ledger.entries()), Decimal(0)) == succeeded
            ledger.verify()
        finally:
            engine.dispose()


# --------------------------------------------------------------------------- rho (zCDP)


def test_rho_grants_and_debits_are_kept_apart_from_epsilon(ledger: Ledger) -> None:
    bal = ledger.grant(DS, ALICE, None, rho_cap="0.5", delta_cap="1e-6", granted_by="p")
    assert (bal.epsilon_cap, bal.rho_cap, bal.delta_cap) == (0, Decimal("0.5"), Decimal("1e-6"))
    entry = ledger.debit(
        ALICE,
        DS,
        Decimal(0),
        rho=Decimal("0.2"),
        delta=Decimal("1e-7"),
        job_id="j",
        release_index=0,
    )
    assert (entry.epsilon, entry.rho, entry.delta) == (0, Decimal("0.2"), Decimal("1e-7"))
    bal = ledger.balance(ALICE, DS)
    assert (bal.rho_spent, bal.rho_remaining) == (Decimal("0.2"), Decimal("0.3"))
    assert bal.epsilon_spent == 0
    # An epsilon debit on a rho-only grant is refused (its epsilon cap is 0).
    with pytest.raises(BudgetExhausted, match="epsilon"):
        ledger.debit(ALICE, DS, Decimal("0.1"), job_id="j", release_index=1)
    # A re-grant of the rho cap keeps what was spent and the delta cap.
    bal = ledger.grant(DS, ALICE, None, rho_cap="1", granted_by="p")
    assert (bal.rho_cap, bal.rho_spent, bal.delta_cap) == (1, Decimal("0.2"), Decimal("1e-6"))
    assert ledger.verify() == ledger.entries()[-1].hash


def test_rho_runs_out_exactly_and_a_refusal_names_rho(ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, None, rho_cap="0.3", granted_by="p")
    for i in range(3):
        ledger.debit(ALICE, DS, Decimal(0), rho=Decimal("0.1"), job_id="j", release_index=i)
    with pytest.raises(BudgetExhausted, match="rho") as err:
        ledger.debit(ALICE, DS, Decimal(0), rho=Decimal("1e-12"), job_id="j", release_index=3)
    assert err.value.remaining == 0
    assert ledger.balance(ALICE, DS).rho_spent == Decimal("0.3")
    assert len(ledger.entries()) == 3


def test_a_debit_must_charge_something(ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, "1", granted_by="p")
    with pytest.raises(InvalidAmount):
        ledger.debit(ALICE, DS, Decimal(0), job_id="j", release_index=0)
    with pytest.raises(InvalidAmount):
        ledger.debit(ALICE, DS, Decimal(0), rho=Decimal(-1), job_id="j", release_index=0)
    assert ledger.entries() == []


def test_tampered_rho_is_detected(engine: Engine, ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, None, rho_cap="1", granted_by="p")
    ledger.debit(ALICE, DS, Decimal(0), rho=Decimal("0.25"), job_id="j", release_index=0)
    ledger.verify()
    with engine.begin() as conn:
        conn.execute(text("UPDATE ledger_entries SET rho_q = 1 WHERE seq = 1"))
    with pytest.raises(LedgerCorrupt, match="entry 1"):
        ledger.verify()


def test_a_ledger_from_before_migrations_upgrades_in_place(database_url: str) -> None:
    """A database made before Alembic (and before rho and refresh) keeps its grants,
    spending and chain, and gains lifetime spending equal to what was spent."""
    engine = budget.create_engine(database_url)
    ledger = Ledger(engine)
    ledger.create_tables()
    ledger.grant(DS, ALICE, "1", granted_by="p")
    ledger.debit(ALICE, DS, Decimal("0.25"), job_id="j", release_index=0)
    ledger.set_policy(DS, Policy(dataset_cap_epsilon=Decimal(5)), set_by="p")
    head = ledger.verify()
    with engine.begin() as conn:  # what the schema looked like before migrations
        conn.execute(text("DROP TABLE alembic_version_budget"))
        for table, column in (
            ("grants", "rho_cap_q"),
            ("grants", "rho_spent_q"),
            ("grants", "expires_at"),
            ("grants", "lifetime_epsilon_spent_q"),
            ("grants", "lifetime_rho_spent_q"),
            ("grants", "lifetime_delta_spent_q"),
            ("grants", "period_start"),
            ("ledger_entries", "rho_q"),
            ("dataset_budgets", "refresh"),
            ("dataset_budgets", "lifetime_epsilon_cap_q"),
            ("dataset_budgets", "lifetime_rho_cap_q"),
            ("dataset_budgets", "lifetime_delta_cap_q"),
            ("dataset_budgets", "researcher_epsilon_cap_q"),
            ("dataset_budgets", "researcher_rho_cap_q"),
            ("dataset_budgets", "researcher_delta_cap_q"),
            ("ledger_entries", "dataset_version"),
            ("dataset_budgets", "period_version"),
        ):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    engine.dispose()
    engine = budget.create_engine(database_url)
    ledger = Ledger(engine)
    try:
        assert budget.schema_revision(engine, "budget") is None
        ledger.create_tables()  # baseline adds the old columns back, then the new revisions
        ledger.create_tables()  # and again: nothing left to do
        assert budget.schema_revision(engine, "budget") == "budget_0004"
        assert ledger.verify() == head
        bal = ledger.balance(ALICE, DS)
        assert (bal.epsilon_spent, bal.rho_cap, bal.rho_spent) == (Decimal("0.25"), 0, 0)
        assert bal.lifetime_epsilon_spent == Decimal("0.25")
        assert bal.refresh == "none"
        ledger.debit(ALICE, DS, Decimal("0.5"), job_id="j", release_index=1)
        assert ledger.balance(ALICE, DS).lifetime_epsilon_spent == Decimal("0.75")
        ledger.verify()
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- policies


def test_policies_are_versioned_and_parsed_exactly() -> None:
    policy = Policy.from_toml("per_release_max_epsilon = 0.5\ndataset_cap_epsilon = 2\n")
    assert policy.per_release_max_epsilon == Decimal("0.5")
    assert Policy.from_toml(policy.to_toml()) == policy
    for bad in (
        "dataset_cap = 1",
        "per_release_max_epsilon = -1",
        "x = [",
        "dataset_cap_delta = 1",
    ):
        with pytest.raises(InvalidAmount):
            Policy.from_toml(bad)
    policy.check_release(DS, Decimal("0.5"), Decimal(0))
    with pytest.raises(PolicyViolation, match=r"at most epsilon=0\.5 per release"):
        policy.check_release(DS, Decimal("0.6"), Decimal(0))


def test_column_rules_round_trip_through_toml_and_storage() -> None:
    text = 'allowed_columns = ["b", "a"]\n\n[bounds]\nz = [0.5, 2]\na = [1, 3]\n'
    policy = Policy.from_toml(text)
    assert policy.allowed_columns == ("b", "a")  # the provider's order is kept
    assert policy.bounds == (("a", 1, 3), ("z", 0.5, 2))
    assert policy.bounds_of("z") == (0.5, 2) and policy.bounds_of("b") is None
    assert Policy.from_toml(policy.to_toml()) == policy
    assert Policy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    for bad, fragment in (
        ('allowed_columns = "a"', "non-empty list"),
        ('allowed_columns = ["a", "a"]', "distinct"),
        ("[bounds]\na = [3, 1]", "lower < upper"),
        ('[bounds]\na = [0, "9"]', "two finite numbers"),
        ("[bounds]\na = [0, inf]", "two finite numbers"),
        ("bounds = 3", "table of column"),
    ):
        with pytest.raises(InvalidAmount, match=fragment):
            Policy.from_toml(bad)


def test_set_policy_keeps_every_version(ledger: Ledger) -> None:
    assert ledger.policy(DS) is None
    first = ledger.set_policy(DS, Policy(dataset_cap_epsilon=Decimal(3)), set_by="prov")
    second = ledger.set_policy(DS, Policy(per_release_max_epsilon=Decimal(1)), set_by="prov2")
    assert (first.version, second.version) == (1, 2)
    current = ledger.policy(DS)
    assert current is not None
    assert current.version == 2
    assert current.policy == Policy(per_release_max_epsilon=Decimal(1))
    history = ledger.policy_history(DS)
    assert [(v.version, v.set_by) for v in history] == [(2, "prov2"), (1, "prov")]
    assert history[1].policy.dataset_cap_epsilon == 3


def test_the_dataset_wide_cap_binds_all_researchers_together(ledger: Ledger) -> None:
    for who in ("alice", "bob"):
        ledger.grant(DS, who, 2, granted_by="p")
    _debit(ledger, "0.5", principal="alice")  # before any policy: counted when it is set
    ledger.set_policy(DS, Policy(dataset_cap_epsilon=Decimal("1.5")), set_by="p")
    _debit(ledger, "0.5", principal="bob")
    with pytest.raises(BudgetExhausted, match="dataset-wide") as err:
        _debit(ledger, "0.75", principal="alice")
    assert err.value.remaining == Decimal("0.5")
    # Refused as a whole: alice's own grant was not charged either.
    assert ledger.balance("alice", DS).epsilon_spent == Decimal("0.5")
    _debit(ledger, "0.5", principal="alice")
    assert ledger.dataset_spent(DS) == (Decimal("1.5"), 0, 0)
    ledger.set_policy(DS, Policy(dataset_cap_epsilon=Decimal(2)), set_by="p")  # raised later
    _debit(ledger, "0.5", principal="bob")
    assert len(ledger.entries()) == 4
    ledger.verify()


def test_concurrent_debits_of_several_researchers_never_pass_the_dataset_cap(
    engine: Engine,
) -> None:
    """64 threads, 4 researchers each with room for 10 debits, a dataset cap of 25."""
    ledger = Ledger(engine)
    people = [f"r{i}" for i in range(4)]
    for who in people:
        ledger.grant(DS, who, 1, granted_by="p")
    ledger.set_policy(DS, Policy(dataset_cap_epsilon=Decimal("2.5")), set_by="p")
    n = 64
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            results[i] = _debit(ledger, "0.1", principal=people[i % 4], job_id=f"t{i}")
        except Exception as exc:  # collected and checked below
            results[i] = exc

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ok = [r for r in results if isinstance(r, LedgerEntry)]
    assert [r for r in results if not isinstance(r, (LedgerEntry, BudgetExhausted))] == []
    assert len(ok) == 25
    assert ledger.dataset_spent(DS)[0] == Decimal("2.5")
    assert sum((ledger.balance(w, DS).epsilon_spent for w in people), Decimal(0)) == Decimal("2.5")
    ledger.verify()


# --------------------------------------------------------------------------- expiry, revocation


def test_an_expired_grant_allows_nothing_and_a_regrant_restores_it(engine: Engine) -> None:
    now = [dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)]
    ledger = Ledger(engine, clock=lambda: now[0])
    bal = ledger.grant(DS, ALICE, 1, granted_by="p", expires_at=now[0] + dt.timedelta(days=1))
    assert bal.expires_at == now[0] + dt.timedelta(days=1)
    _debit(ledger, "0.25")
    now[0] += dt.timedelta(days=1)  # the instant it expires
    assert not ledger.has_grant(ALICE, DS)
    assert ledger.balances(ALICE) == []
    with pytest.raises(NoGrant):
        _debit(ledger, "0.25", release_index=1)
    with pytest.raises(InvalidAmount, match="already past"):
        ledger.grant(DS, ALICE, 1, granted_by="p", expires_at=now[0])
    ledger.grant(DS, ALICE, 1, granted_by="p")  # no expiry now; spending is kept
    assert ledger.balance(ALICE, DS).epsilon_spent == Decimal("0.25")
    _debit(ledger, "0.25", release_index=1)


def test_a_revoked_grant_refuses_the_next_release(ledger: Ledger) -> None:
    ledger.grant(DS, ALICE, 1, granted_by="p")
    _debit(ledger, "0.5")
    ledger.revoke(DS, ALICE)
    with pytest.raises(NoGrant):
        _debit(ledger, "0.1", release_index=1)
    with pytest.raises(NoGrant):
        ledger.revoke(DS, ALICE)
    assert len(ledger.entries()) == 1  # what was spent stays on record
    ledger.grant(DS, ALICE, 1, granted_by="p")
    assert ledger.balance(ALICE, DS).epsilon_spent == Decimal("0.5")


# --------------------------------------------------------------------------- refresh windows


class _Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


THURSDAY = dt.datetime(2026, 12, 3, 21, 0, tzinfo=dt.UTC)


def _clocked(engine: Engine, start: dt.datetime = THURSDAY) -> tuple[_Clock, Ledger]:
    clock = _Clock(start)
    return clock, Ledger(engine, clock=clock)


def test_a_refresh_without_a_lifetime_cap_is_refused() -> None:
    with pytest.raises(InvalidAmount, match="lifetime cap"):
        Policy.from_toml('refresh = "daily"\n')
    with pytest.raises(InvalidAmount, match="refresh must be one of"):
        Policy.from_toml('refresh = "hourly"\nlifetime_cap_epsilon = 3\n')
    policy = Policy.from_toml('refresh = "weekly"\nlifetime_cap_epsilon = 3\n')
    assert policy.refreshing == ("epsilon",)
    assert Policy.from_toml(policy.to_toml()) == policy


def test_daily_budget_starts_again_each_day_until_the_lifetime_cap(engine: Engine) -> None:
    clock, ledger = _clocked(engine)
    ledger.grant(DS, ALICE, 1, granted_by="p")
    ledger.set_policy(DS, Policy(refresh="daily", lifetime_cap_epsilon=Decimal("2.5")), set_by="p")
    _debit(ledger, "1")
    with pytest.raises(BudgetExhausted, match=r"starts again at 2026-12-04T00:00:00\+00:00"):
        _debit(ledger, "0.5", release_index=1)
    bal = ledger.balance(ALICE, DS)
    assert (bal.epsilon_remaining, bal.lifetime_epsilon_spent) == (0, 1)
    assert bal.next_refresh == dt.datetime(2026, 12, 4, tzinfo=dt.UTC)

    clock.now = dt.datetime(2026, 12, 4, 0, 0, 1, tzinfo=dt.UTC)  # the next day
    bal = ledger.balance(ALICE, DS)  # shown as refreshed before any debit records it
    assert (bal.epsilon_spent, bal.epsilon_remaining, bal.lifetime_epsilon_spent) == (0, 1, 1)
    _debit(ledger, "1", release_index=2)

    clock.now = dt.datetime(2026, 12, 5, 9, tzinfo=dt.UTC)
    bal = ledger.balance(ALICE, DS)
    # 2 of the lifetime 2.5 are spent: this day's budget is 1 but only 0.5 is left for good.
    assert (bal.epsilon_remaining, bal.lifetime_epsilon_spent) == (Decimal("0.5"), 2)
    with pytest.raises(BudgetExhausted, match="lifetime cap") as exc:
        _debit(ledger, "0.75", release_index=3)
    assert exc.value.lifetime and exc.value.remaining == Decimal("0.5")
    _debit(ledger, "0.5", release_index=4)

    clock.now = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)  # months later: still nothing
    with pytest.raises(BudgetExhausted, match="lifetime cap"):
        _debit(ledger, "0.01", release_index=5)
    assert ledger.balance(ALICE, DS).epsilon_remaining == 0
    assert sum(e.epsilon for e in ledger.entries()) == Decimal("2.5")
    ledger.verify()


def test_weekly_and_monthly_periods_follow_the_calendar(engine: Engine) -> None:
    clock, ledger = _clocked(engine)
    ledger.grant(DS, ALICE, 1, granted_by="p")
    ledger.set_policy(DS, Policy(refresh="weekly", lifetime_cap_epsilon=Decimal(10)), set_by="p")
    _debit(ledger, "1")
    clock.now = dt.datetime(2026, 12, 6, 23, 59, tzinfo=dt.UTC)  # Sunday: same week
    with pytest.raises(BudgetExhausted):
        _debit(ledger, "0.1", release_index=1)
    clock.now = dt.datetime(2026, 12, 7, 0, 0, tzinfo=dt.UTC)  # Monday
    _debit(ledger, "1", release_index=2)

    ledger.set_policy(DS, Policy(refresh="monthly", lifetime_cap_epsilon=Decimal(10)), set_by="p")
    # The new window counts from now: this period's spending is not forgiven.
    with pytest.raises(BudgetExhausted):
        _debit(ledger, "0.1", release_index=3)
    clock.now = dt.datetime(2026, 12, 31, 23, tzinfo=dt.UTC)
    with pytest.raises(BudgetExhausted):
        _debit(ledger, "0.1", release_index=4)
    assert ledger.balance(ALICE, DS).next_refresh == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    clock.now = dt.datetime(2027, 1, 1, 0, 0, tzinfo=dt.UTC)
    _debit(ledger, "1", release_index=5)
    assert ledger.balance(ALICE, DS).lifetime_epsilon_spent == 3


def test_only_measures_with_a_lifetime_cap_refresh(engine: Engine) -> None:
    """delta has no lifetime cap here, so it stays one budget for good."""
    clock, ledger = _clocked(engine)
    ledger.grant(DS, ALICE, 1, delta_cap="1e-6", granted_by="p")
    ledger.set_policy(DS, Policy(refresh="daily", lifetime_cap_epsilon=Decimal(5)), set_by="p")
    ledger.debit(ALICE, DS, Decimal("0.5"), delta=Decimal("1e-6"), job_id="j", release_index=0)
    clock.now += dt.timedelta(days=1)
    bal = ledger.balance(ALICE, DS)
    assert (bal.epsilon_spent, bal.delta_spent) == (0, Decimal("1e-6"))
    with pytest.raises(BudgetExhausted, match="delta"):
        ledger.debit(ALICE, DS, Decimal("0.5"), delta=Decimal("1e-7"), job_id="j", release_index=1)
    _debit(ledger, "1", release_index=2)  # epsilon did start again


def test_a_refused_debit_in_a_new_period_changes_nothing(engine: Engine) -> None:
    clock, ledger = _clocked(engine)
    ledger.grant(DS, ALICE, 1, granted_by="p")
    ledger.set_policy(DS, Policy(refresh="daily", lifetime_cap_epsilon=Decimal(3)), set_by="p")
    _debit(ledger, "1")
    clock.now += dt.timedelta(days=1)
    with pytest.raises(BudgetExhausted):
        _debit(ledger, "2", release_index=1)  # above the period cap: rolled back whole
    with engine.connect() as conn:  # the period's reset was rolled back with it
        spent = conn.execute(text("SELECT epsilon_spent_q FROM grants")).scalar()
    assert spent == to_quanta(Decimal(1))
    assert ledger.balance(ALICE, DS).epsilon_remaining == 1
    assert len(ledger.entries()) == 1


# Concurrent debits across a period boundary: the lifetime cap still holds exactly.
def test_concurrent_debits_across_periods_never_pass_the_lifetime_cap(engine: Engine) -> None:
    clock, ledger = _clocked(engine)
    ledger.grant(DS, ALICE, 1, granted_by="p")
    ledger.set_policy(DS, Policy(refresh="daily", lifetime_cap_epsilon=Decimal(3)), set_by="p")
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        for i in range(10):
            try:
                _debit(ledger, "0.25", job_id=f"w{w}", release_index=i)
                result = "ok"
            except BudgetExhausted:
                result = "exhausted"
            with lock:
                outcomes.append(result)

    for _day in range(5):  # 5 days of 1 each would be 5, but the lifetime allows 3
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        clock.now += dt.timedelta(days=1)
    assert outcomes.count("ok") == 12
    assert ledger.balance(ALICE, DS).lifetime_epsilon_spent == 3
    assert sum(e.epsilon for e in ledger.entries()) == 3
    ledger.verify()


def test_the_per_researcher_cap_bounds_grants_given_and_to_come(ledger: Ledger) -> None:
    ledger.set_policy(DS, Policy(researcher_cap_epsilon=Decimal(1)), set_by="p")
    with pytest.raises(PolicyViolation, match=r"at most epsilon=1 per researcher"):
        ledger.grant(DS, ALICE, "2", granted_by="p")
    assert ledger.balances(ALICE) == []  # the refused grant left nothing behind
    assert ledger.grant(DS, ALICE, None, granted_by="p").epsilon_cap == 1  # the policy's
    assert ledger.grant(DS, "bob", "0.5", granted_by="p").epsilon_cap == Decimal("0.5")
    ledger.debit(ALICE, DS, Decimal("0.25"), job_id="j", release_index=0)
    # Lowering the cap binds the grant already given, in the debit itself.
    ledger.set_policy(DS, Policy(researcher_cap_epsilon=Decimal("0.3")), set_by="p")
    mine = ledger.balance(ALICE, DS)
    assert (mine.epsilon_cap, mine.epsilon_remaining) == (Decimal("0.3"), Decimal("0.05"))
    with pytest.raises(BudgetExhausted) as err:
        ledger.debit(ALICE, DS, Decimal("0.1"), job_id="j", release_index=1)
    assert err.value.remaining == Decimal("0.05")
    ledger.debit(ALICE, DS, Decimal("0.05"), job_id="j", release_index=1)
    # Raising it again gives back up to the grant's own cap, not more.
    ledger.set_policy(DS, Policy(researcher_cap_epsilon=Decimal(5)), set_by="p")
    assert ledger.balance(ALICE, DS).epsilon_cap == 1
    assert ledger.balance("bob", DS).epsilon_cap == Decimal("0.5")
    assert (
        Policy.from_toml(Policy(researcher_cap_epsilon=Decimal(1)).to_toml()).researcher_cap_epsilon
        == 1
    )


# --------------------------------------------------------------------------- group commit


def test_batched_debits_are_each_checked_and_a_refusal_leaves_no_trace(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debits committed together (group commit) keep every cap exact, one by one.

    The batch is made deterministic: the first debit's transaction waits until
    all the others are queued, so they are committed as one batch, in which some
    pass and some are refused by the grant's cap and some by the dataset-wide cap.
    """
    ledger = Ledger(engine)
    ledger.set_policy(DS, Policy(dataset_cap_epsilon=Decimal("1.5")), set_by="p")
    researchers = [f"r{i}" for i in range(6)]
    for name in researchers:
        ledger.grant(DS, name, "0.5", granted_by="p")
    queued = threading.Event()
    batches: list[int] = []
    original = Ledger._debit_batch

    def slow_first(self: Ledger, conn: object, batch: list) -> list:  # type: ignore[type-arg]
        if not batches:
            queued.wait(timeout=30)
        batches.append(len(batch))
        return original(self, conn, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(Ledger, "_debit_batch", slow_first)
    outcomes: dict[tuple[str, int], str] = {}

    def spend(name: str, index: int) -> None:
        try:
            _debit(ledger, "0.2", principal=name, release_index=index)
            outcomes[(name, index)] = "ok"
        except BudgetExhausted as err:
            outcomes[(name, index)] = "wide" if err.dataset_wide else "own"

    first = threading.Thread(target=spend, args=(researchers[0], 0))
    first.start()
    while not ledger._leading:  # the first debit leads and waits in its transaction
        pass
    others = [
        threading.Thread(target=spend, args=(name, i))
        for i in range(3)
        for name in researchers
        if (name, i) != (researchers[0], 0)
    ]
    for t in others:
        t.start()
    while len(ledger._queue) < len(others):
        pass
    queued.set()
    for t in [first, *others]:
        t.join(timeout=60)
    assert batches[0] == 1 and sum(batches) == 18 and max(batches) > 1
    assert list(outcomes.values()).count("ok") == 7  # 1.5 / 0.2, all from the dataset cap
    assert "wide" in outcomes.values() and "own" in outcomes.values()
    spent = [ledger.balance(name, DS).epsilon_spent for name in researchers]
    assert all(s <= Decimal("0.5") for s in spent)
    assert sum(spent) == Decimal("1.4") == ledger.dataset_spent(DS)[0]
    assert sum(e.epsilon for e in ledger.entries()) == Decimal("1.4")
    ledger.verify()
