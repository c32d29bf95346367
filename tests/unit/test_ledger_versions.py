"""Dataset versions in the ledger (`budget.Ledger.record_version`), on SQLite and PostgreSQL.

Invariants guarded here:

* a version is a link of the hash chain (kind ``version`` or ``new_period``),
  and every debit records the version its release was computed on; the chain
  verifies, and tampering with a recorded version breaks it;
* a version that keeps the budgets changes no balance; one that starts a new
  budget period sets each researcher's period spending and the dataset-wide
  spending to zero, and keeps lifetime spending, so lifetime caps bind across
  periods;
* a release prepared on a version older than the current budget period is
  refused (`StaleVersion`) and charges nothing;
* after any sequence of debits and versions, each balance equals what the
  ledger's entries say since the last new period (hypothesis).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

import budget
from budget import BudgetExhausted, Ledger, LedgerCorrupt, Policy, StaleVersion

DS = "stays"
ALICE, BOB = "alice", "bob"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = budget.create_engine(database_url)
    Ledger(eng).create_tables()
    yield eng
    eng.dispose()


@pytest.fixture
def ledger(engine: Engine) -> Ledger:
    return Ledger(engine)


def _version(ledger: Ledger, engine: Engine, version: int, *, new_period: bool) -> None:
    with engine.connect().execution_options(immediate=True) as conn, conn.begin():
        ledger.record_version(conn, DS, version, new_period=new_period, by="prov")


def _debit(ledger: Ledger, who: str, amount: str, version: int | None, index: int = 0) -> None:
    ledger.debit(
        who, DS, Decimal(amount), job_id=f"j{index}", release_index=index, dataset_version=version
    )


def test_a_version_that_keeps_budgets_is_chained_and_changes_no_balance(
    ledger: Ledger, engine: Engine
) -> None:
    ledger.grant(DS, ALICE, 5, granted_by="prov")
    ledger.set_policy(DS, Policy(dataset_cap_epsilon=Decimal(8)), set_by="prov")
    _debit(ledger, ALICE, "1.5", 1)
    _version(ledger, engine, 2, new_period=False)
    _debit(ledger, ALICE, "1", 2, 1)
    entries = ledger.entries(dataset=DS)
    assert [(e.kind, e.dataset_version, e.principal) for e in entries] == [
        ("debit", 1, ALICE),
        ("version", 2, "prov"),
        ("debit", 2, ALICE),
    ]
    assert entries[1].epsilon == 0 and entries[1].job_id == ""
    assert ledger.balance(ALICE, DS).epsilon_spent == Decimal("2.5")
    assert ledger.dataset_spent(DS)[0] == Decimal("2.5")
    assert ledger.check() == (3, entries[-1].hash)


def test_a_new_period_starts_spending_again_but_lifetime_caps_bind(
    ledger: Ledger, engine: Engine
) -> None:
    ledger.set_policy(
        DS,
        Policy(dataset_cap_epsilon=Decimal(6), lifetime_cap_epsilon=Decimal(7)),
        set_by="prov",
    )
    ledger.grant(DS, ALICE, 5, granted_by="prov")
    ledger.grant(DS, BOB, 5, granted_by="prov")
    _debit(ledger, ALICE, "4.5", 1)
    _debit(ledger, BOB, "1.5", 1, 1)
    with pytest.raises(BudgetExhausted, match="dataset-wide"):
        _debit(ledger, BOB, "0.5", 1, 2)  # 4.5 + 1.5 = the dataset-wide 6
    _version(ledger, engine, 2, new_period=True)
    alice = ledger.balance(ALICE, DS)
    # The period's 5 are back, but only 7 - 4.5 of the lifetime cap are left.
    assert (alice.epsilon_spent, alice.epsilon_remaining) == (0, Decimal("2.5"))
    assert ledger.dataset_spent(DS) == (0, 0, 0)
    _debit(ledger, ALICE, "2.5", 2, 3)  # lifetime: 4.5 + 2.5 = 7
    with pytest.raises(BudgetExhausted, match="lifetime") as refused:
        _debit(ledger, ALICE, "0.5", 2, 4)
    assert refused.value.remaining == 0
    _debit(ledger, BOB, "3.5", 2, 5)  # dataset-wide: 2.5 + 3.5 = 6 again
    assert ledger.dataset_spent(DS)[0] == 6
    kinds = [(e.kind, e.dataset_version) for e in ledger.entries(dataset=DS)]
    assert kinds == [("debit", 1)] * 2 + [("new_period", 2)] + [("debit", 2)] * 2
    ledger.verify()


def test_a_release_prepared_on_the_previous_period_is_refused_and_charges_nothing(
    ledger: Ledger, engine: Engine
) -> None:
    ledger.grant(DS, ALICE, 5, granted_by="prov")
    _debit(ledger, ALICE, "1", 1)
    _version(ledger, engine, 2, new_period=True)  # no policy: a budget row is made for it
    head = ledger.head()
    with pytest.raises(StaleVersion, match="submit the job again"):
        _debit(ledger, ALICE, "1", 1, 1)
    assert ledger.head() == head
    assert ledger.balance(ALICE, DS).epsilon_spent == 0
    _debit(ledger, ALICE, "1", 2, 2)
    _version(ledger, engine, 3, new_period=False)
    _debit(ledger, ALICE, "1", 2, 3)  # version 2 is still in the period: charged
    assert ledger.balance(ALICE, DS).epsilon_spent == 2


def test_a_late_policy_counts_the_dataset_wide_spending_of_the_current_period_only(
    ledger: Ledger, engine: Engine
) -> None:
    ledger.grant(DS, ALICE, 5, granted_by="prov")
    _debit(ledger, ALICE, "3", 1)
    _version(ledger, engine, 2, new_period=False)
    _debit(ledger, ALICE, "1", 2, 1)
    ledger.set_policy(DS, Policy(dataset_cap_epsilon=Decimal(10)), set_by="prov")
    assert ledger.dataset_spent(DS)[0] == 4  # a version that keeps budgets keeps counting
    other = "later"
    ledger.grant(other, ALICE, 5, granted_by="prov")
    ledger.debit(ALICE, other, Decimal(2), job_id="x", release_index=0, dataset_version=1)
    with engine.connect().execution_options(immediate=True) as conn, conn.begin():
        ledger.record_version(conn, other, 2, new_period=True, by="prov")
    ledger.debit(ALICE, other, Decimal("0.5"), job_id="y", release_index=0, dataset_version=2)
    ledger.set_policy(other, Policy(dataset_cap_epsilon=Decimal(10)), set_by="prov")
    assert ledger.dataset_spent(other)[0] == Decimal("0.5")


def test_a_rewritten_version_breaks_the_chain(ledger: Ledger, engine: Engine) -> None:
    ledger.grant(DS, ALICE, 5, granted_by="prov")
    _debit(ledger, ALICE, "1", 1)
    _version(ledger, engine, 2, new_period=True)
    ledger.verify()
    with engine.begin() as conn:
        conn.execute(text("UPDATE ledger_entries SET dataset_version = 3 WHERE seq = 1"))
    with pytest.raises(LedgerCorrupt, match="entry 1 does not verify"):
        ledger.verify()


def test_entries_from_before_versions_still_verify(ledger: Ledger, engine: Engine) -> None:
    """An entry without a version hashes as it did before versions existed."""
    ledger.grant(DS, ALICE, 5, granted_by="prov")
    _debit(ledger, ALICE, "1", None)
    [entry] = ledger.entries()
    assert entry.dataset_version is None
    assert ledger.verify() == entry.hash


# --- every balance is what the ledger says --------------------------------------------

_steps = st.lists(
    st.one_of(
        st.tuples(st.just("debit"), st.sampled_from([ALICE, BOB]), st.integers(1, 30)),
        st.tuples(st.just("version"), st.booleans(), st.just(0)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps)
def test_property_balances_follow_the_ledger_across_versions(
    steps: list[tuple[str, object, int]],
) -> None:
    """Caps: 2 per researcher and period, 3 dataset-wide per period, 5 lifetime.

    Whatever the order of debits and versions, each refusal is right, and each
    balance equals the sum of the ledger's debits since the last new period
    (lifetime: all of them).
    """
    caps = {"researcher": Decimal(2), "dataset": Decimal(3), "lifetime": Decimal(5)}
    with tempfile.TemporaryDirectory() as tmp:
        engine = budget.create_engine(f"sqlite:///{Path(tmp) / 'l.db'}")
        ledger = Ledger(engine)
        ledger.create_tables()
        try:
            ledger.set_policy(
                DS,
                Policy(dataset_cap_epsilon=caps["dataset"], lifetime_cap_epsilon=caps["lifetime"]),
                set_by="prov",
            )
            for who in (ALICE, BOB):
                ledger.grant(DS, who, caps["researcher"], granted_by="prov")
            version = 1
            period: dict[str, Decimal] = {ALICE: Decimal(0), BOB: Decimal(0)}
            lifetime = dict(period)
            for i, (kind, arg, tenths) in enumerate(steps):
                if kind == "version":
                    version += 1
                    with engine.connect().execution_options(immediate=True) as conn, conn.begin():
                        ledger.record_version(conn, DS, version, new_period=bool(arg), by="p")
                    if arg:
                        period = {ALICE: Decimal(0), BOB: Decimal(0)}
                    continue
                who, amount = str(arg), Decimal(tenths) / 10
                fits = (
                    period[who] + amount <= caps["researcher"]
                    and sum(period.values()) + amount <= caps["dataset"]
                    and lifetime[who] + amount <= caps["lifetime"]
                )
                try:
                    ledger.debit(
                        who, DS, amount, job_id=f"j{i}", release_index=0, dataset_version=version
                    )
                except BudgetExhausted:
                    assert not fits
                else:
                    assert fits
                    period[who] += amount
                    lifetime[who] += amount
            entries = ledger.entries(dataset=DS)
            opened = max((e.seq for e in entries if e.kind == "new_period"), default=0)
            for who in (ALICE, BOB):
                mine = [e for e in entries if e.principal == who]
                balance = ledger.balance(who, DS)
                assert balance.epsilon_spent == sum(
                    (e.epsilon for e in mine if e.seq > opened), Decimal(0)
                )
                assert balance.epsilon_spent == period[who]
                assert balance.lifetime_epsilon_spent == lifetime[who]
            assert ledger.dataset_spent(DS)[0] == sum(period.values())
            ledger.verify()
        finally:
            ledger.close()
            engine.dispose()


@pytest.mark.parametrize("refresh", ["none", "monthly"])
def test_versions_switching_under_concurrent_debits_never_charge_a_stale_release(
    engine: Engine, refresh: str
) -> None:
    """Twelve threads, each with its own `Ledger` (as replicas would), debit while
    ten versions switch, alternately keeping budgets and starting a period.

    No release computed on a version before the current period is charged; each
    grant's spending is the ledger's debits since the last new period; the
    dataset-wide cap holds in each period; the chain verifies.
    """
    import random
    import threading
    import time

    admin = Ledger(engine)
    policy = Policy(
        dataset_cap_epsilon=Decimal(6),
        lifetime_cap_epsilon=Decimal(1000) if refresh != "none" else None,
        refresh=refresh,
    )
    admin.set_policy(DS, policy, set_by="prov")
    researchers = [f"r{i}" for i in range(6)]
    for who in researchers:
        admin.grant(DS, who, 2, granted_by="prov")
    current = [1]
    stop = threading.Event()
    errors: list[BaseException] = []

    def debit(k: int) -> None:
        ledger = Ledger(engine)
        i = 0
        while not stop.is_set():
            seen = current[0]  # the version the release was priced on
            time.sleep(random.random() * 0.002)
            try:
                ledger.debit(
                    researchers[k % 6],
                    DS,
                    Decimal("0.1"),
                    job_id=f"j{k}",
                    release_index=i,
                    dataset_version=seen,
                )
            except (StaleVersion, BudgetExhausted):
                pass
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)
            i += 1
        ledger.close()

    threads = [threading.Thread(target=debit, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    try:
        for version in range(2, 12):
            time.sleep(0.1)
            _version(admin, engine, version, new_period=version % 2 == 0)
            current[0] = version
        time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    admin.verify()
    entries = admin.entries(dataset=DS)
    period = None
    spent_in_period: dict[int | None, Decimal] = {}
    for e in entries:
        if e.kind == "new_period":
            period = e.dataset_version
        elif e.kind == "debit":
            assert period is None or (e.dataset_version or 0) >= period, e
            spent_in_period[period] = spent_in_period.get(period, Decimal(0)) + e.epsilon
    assert max(spent_in_period.values()) <= 6
    assert len(spent_in_period) > 1  # debits landed in several periods
    opened = max(e.seq for e in entries if e.kind == "new_period")
    for who in researchers:
        since = sum(
            (e.epsilon for e in entries if e.principal == who and e.seq > opened), Decimal(0)
        )
        assert admin.balance(who, DS).epsilon_spent == since
    assert admin.dataset_spent(DS)[0] == spent_in_period[period]
    admin.close()
