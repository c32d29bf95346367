"""Job lifecycle: submission, execution in a worker, the release path, watching.

The release path (`JobService._release`) is the heart of Enclave and runs in
the trusted host, in this order:

1. parse the untrusted plan and ε; resolve the dataset; check the grant;
2. price the plan against the public schema (no data);
3. debit the ledger atomically — a refusal here costs nothing;
4. record the release, then evaluate the measurement on the data;
5. hand the noisy value back to the worker.

A failure at step 4 keeps the debit (charge before release: a crash loses
budget, never privacy).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from budget import (
    DELTA_QUANTUM,
    Balance,
    BudgetError,
    Ledger,
    Policy,
    charge_amount,
    parse_delta,
    parse_epsilon,
    parse_rho,
    to_quanta,
    total,
)

from . import _compiler
from ._errors import (
    JobCancelled,
    JobError,
    PlanError,
    ResourceLimit,
    ServiceStopping,
    TooManyJobs,
    UnknownDataset,
)
from ._plan import from_wire, to_wire
from ._sandbox import Isolation, Limits, ReleaseRequest, compile_script, run_worker
from ._schema import DatasetHandle
from ._store import JobRecord, JobState, JobStore, ReleaseRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What a script would cost, and whether the caller's budgets cover it."""

    #: What each release would be recorded as, without a value.
    releases: tuple[ReleaseRecord, ...]
    budgets: tuple[Balance, ...]
    fits_budget: bool

    @property
    def epsilon(self) -> Decimal:
        """Total ε over all releases (exact)."""
        return total(r.epsilon for r in self.releases)

    @property
    def delta(self) -> Decimal:
        """Total δ over all releases (exact)."""
        return total((r.delta for r in self.releases), quantum=DELTA_QUANTUM)

    @property
    def rho(self) -> Decimal:
        """Total ρ over all releases on zCDP datasets (exact)."""
        return total(r.rho for r in self.releases)


def _mechanisms(priced: _compiler.PricedQuery) -> str:
    return ", ".join(sorted({d for d, _s, _a in priced.accuracy.values()}))


class DatasetCatalog(Protocol):
    """What the job service needs from the catalog (provided by `enclave`)."""

    def resolve(self, name: str) -> DatasetHandle:
        """The dataset's schema and file; raises `UnknownDataset`."""
        ...


Classifier = Callable[[BaseException], str]


class JobService:
    """Runs jobs on a bounded pool of worker processes.

    Args:
        store: job and release rows.
        ledger: the privacy budget.
        catalog: resolves dataset names to schemas and files.
        classify: maps an exception to the status code name stored with a failed
            job (enclave passes its single error→status table).
        limits: per-job sandbox limits.
        max_concurrent: jobs running at once; others wait QUEUED.
        max_active_per_principal: jobs one researcher may have queued or running
            at once; more are refused (`TooManyJobs`), so that one researcher
            cannot fill the queue for everyone.
        max_active: the same bound over all researchers together.
        isolation: what workers hide and whether every OS layer is required.
    """

    def __init__(
        self,
        store: JobStore,
        ledger: Ledger,
        catalog: DatasetCatalog,
        classify: Classifier,
        limits: Limits | None = None,
        max_concurrent: int = 4,
        max_active_per_principal: int = 16,
        max_active: int = 256,
        isolation: Isolation | None = None,
        max_evaluations: int | None = None,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._catalog = catalog
        self._classify = classify
        self.limits = limits or Limits()
        self.isolation = isolation or Isolation()
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="enclave-job")
        # Evaluations on the data are CPU-bound: more at once than cores only adds
        # their working sets up (32 on a 10M-row dataset: 2.2x the idle RSS).
        self._evaluations = threading.BoundedSemaphore(max_evaluations or _cores())
        # Cost previews run a worker too, on the caller's RPC thread: bound them.
        self._previews = threading.BoundedSemaphore(max_concurrent)
        self._cancels: dict[str, threading.Event] = {}
        self._changed = threading.Condition()
        self._changes: dict[str, int] = {}  # job id -> changes seen by this server
        self._accepting = True
        self.max_active_per_principal = max_active_per_principal
        self.max_active = max_active
        self._active: dict[str, int] = {}  # jobs queued or running, per principal
        self._active_lock = threading.Lock()

    # --- submission -----------------------------------------------------------------

    def submit(self, principal: str, dataset: str, script: str, request_id: str = "") -> JobRecord:
        """Validate and queue a job; idempotent on ``(principal, request_id)``.

        Raises:
            ScriptRejected, UnknownDataset, RequestConflict.
        """
        if not self._accepting:
            raise ServiceStopping(
                "the server is shutting down and accepts no new jobs; retry later"
            )
        compile_script(script)
        self._granted(principal, dataset)
        job_id = uuid.uuid4().hex
        refusal = self._admit(principal)
        if refusal is not None:
            # A replay of a job already accepted is answered whatever the limits now.
            replayed = self._store.find(principal, request_id) if request_id else None
            if replayed is None or (replayed.script, replayed.dataset) != (script, dataset):
                raise refusal
            return replayed
        try:
            job, created = self._store.create(
                job_id, principal, request_id or f"auto-{job_id}", dataset, script
            )
        except BaseException:
            self._release_slot(principal)
            raise
        if not created:  # a replay: the job exists already
            self._release_slot(principal)
            return job
        self._cancels[job.id] = threading.Event()
        # Its change counter exists from now until it ends (then it is dropped):
        # waiters tell "still ours and running" from "ended" without a read.
        self._notify(job.id)
        self._pool.submit(self._run, job)
        log.info("job %s queued for %s on %s", job.id, principal, dataset)
        return job

    def _admit(self, principal: str) -> TooManyJobs | None:
        """Take a slot for a new job of ``principal``; or the refusal, if none is free."""
        with self._active_lock:
            mine, everyone = self._active.get(principal, 0), sum(self._active.values())
            if mine >= self.max_active_per_principal:
                return TooManyJobs(
                    f"you already have {mine} jobs queued or running, the most this server "
                    f"allows per researcher ({self.max_active_per_principal}); nothing was "
                    "queued or charged: retry when one has finished"
                )
            if everyone >= self.max_active:
                return TooManyJobs(
                    f"the server has {everyone} jobs queued or running, the most it allows "
                    f"({self.max_active}); nothing was queued or charged: retry in a few seconds"
                )
            self._active[principal] = mine + 1
            return None

    def _release_slot(self, principal: str) -> None:
        with self._active_lock:
            left = self._active.get(principal, 0) - 1
            if left > 0:
                self._active[principal] = left
            else:
                self._active.pop(principal, None)

    def _granted(self, principal: str, dataset: str) -> DatasetHandle:
        # The grant is checked first and both failures read the same, so that the
        # names of datasets the researcher was not granted stay private.
        if not self._ledger.has_grant(principal, dataset):
            raise UnknownDataset(f"no dataset called {dataset!r} is granted to you")
        return self._catalog.resolve(dataset)

    def get(self, job_id: str, *, principal: str | None = None) -> JobRecord:
        """A job (of ``principal`` only, if given)."""
        return self._store.get(job_id, principal=principal)

    def list(
        self, principal: str | None, *, limit: int = 50, before: str | None = None
    ) -> list[JobRecord]:
        """Jobs newest first."""
        return self._store.list(principal, limit=limit, before=before)

    def cancel(self, job_id: str, *, principal: str | None = None) -> JobRecord:
        """Stop a job. Releases already made stay charged."""
        job = self._store.get(job_id, principal=principal)
        if not job.state.final:
            event = self._cancels.get(job_id)
            if event is not None:
                event.set()
            if self._store.finish(
                job_id,
                JobState.CANCELLED,
                error_code="CANCELLED",
                error_message="cancelled at the researcher's request",
            ):
                self._notify(job_id, final=True)
        return self._store.get(job_id)

    def watch(
        self,
        job_id: str,
        *,
        principal: str | None = None,
        active: Callable[[], bool] = lambda: True,
    ) -> Iterator[JobRecord]:
        """Yield the job now and at each state change, ending at a final state."""
        last: JobState | None = None
        while active():
            with self._changed:
                seen = self._changes.get(job_id, -1)
            job = self._store.get(job_id, principal=principal)
            if job.state != last:
                last = job.state
                yield job
            if job.state.final:
                return
            self._wait_for_change(job_id, seen, timeout=1.0)

    def wait(
        self,
        job_id: str,
        *,
        principal: str | None = None,
        active: Callable[[], bool] = lambda: True,
        until: float | None = None,
    ) -> JobRecord:
        """The job once final, or as it is when ``active()`` or time runs out.

        ``until`` is a `time.monotonic` instant. Reads the database only at
        the start, when this server says the job ended, and once a second (a
        job run by another replica): not at each intermediate change, as
        `watch` must.
        """
        with self._changed:
            seen = self._changes.get(job_id, -1)
        job = self._store.get(job_id, principal=principal)
        while not job.state.final and active():
            timeout = 1.0 if until is None else min(1.0, until - time.monotonic())
            if timeout <= 0:
                break
            self._wait_for_change(job_id, seen, timeout=timeout)
            with self._changed:
                seen = self._changes.get(job_id, -1)
            if seen == -1:  # it ended here (its counter is dropped), or is another replica's
                job = self._store.get(job_id, principal=principal)
        if not job.state.final:  # out of time: the job as it is now, releases included
            job = self._store.get(job_id, principal=principal)
        return job

    def _wait_for_change(self, job_id: str, seen: int, timeout: float) -> None:
        # Woken by any job's change, but reads the database again only after a
        # change of its own: with many jobs watched, a change costs one read,
        # not one per watcher. The timeout covers changes made by another server.
        with self._changed:
            self._changed.wait_for(lambda: self._changes.get(job_id, -1) != seen, timeout=timeout)

    def _notify(self, job_id: str, final: bool = False) -> None:
        with self._changed:
            if final:  # waiters then see -1: a change, and "not running here"
                self._changes.pop(job_id, None)
            else:
                self._changes[job_id] = self._changes.get(job_id, 0) + 1
            self._changed.notify_all()

    # --- execution ------------------------------------------------------------------

    def _run(self, job: JobRecord) -> None:
        cancel = self._cancels.setdefault(job.id, threading.Event())
        try:
            if not self._accepting:
                self._store.finish(
                    job.id,
                    JobState.FAILED,
                    error_code="UNAVAILABLE",
                    error_message="the server stopped before the job started; nothing was charged",
                )
                return
            if not self._store.mark_running(job.id):
                return
            self._notify(job.id)
            try:
                outcome = run_worker(
                    job.script,
                    job.dataset,
                    self.limits,
                    lambda request: self._release(job, request),
                    cancel,
                    self.isolation,
                )
            except JobCancelled:
                self._store.finish(
                    job.id,
                    JobState.CANCELLED,
                    error_code="CANCELLED",
                    error_message="the job was cancelled",
                )
            except Exception as err:
                if isinstance(err, (JobError, BudgetError)):
                    message = str(err)  # domain errors never quote confidential data
                else:
                    log.exception("job %s failed", job.id)
                    message = "internal error; the operator can find details in the server log"
                self._store.finish(
                    job.id, JobState.FAILED, error_code=self._classify(err), error_message=message
                )
            else:
                self._store.finish(
                    job.id, JobState.SUCCEEDED, result=outcome.result, printed=outcome.printed
                )
        except Exception:  # pragma: no cover - never let a job thread die silently
            log.exception("job %s: internal error", job.id)
            self._store.finish(
                job.id,
                JobState.FAILED,
                error_code="INTERNAL",
                error_message="internal error; see the server log",
            )
        finally:
            self._cancels.pop(job.id, None)
            self._release_slot(job.principal)
            self._notify(job.id, final=True)

    def _price(
        self, principal: str, request: ReleaseRequest
    ) -> tuple[_compiler.PricedQuery, Policy | None]:
        """Steps 1-2 of the release path: everything that needs no data.

        Returns the policy in force too, which the release applies afterwards.
        """
        query = from_wire(request.plan)
        handle, policy = self._view(principal, query.dataset)
        delta = charge_amount(parse_delta(request.delta), quantum=DELTA_QUANTUM)
        if handle.schema.zcdp:
            if request.epsilon or not request.rho:
                raise PlanError(
                    f"dataset {query.dataset!r} accounts privacy in rho (zero-concentrated "
                    "DP): pass release(plan, rho=...), e.g. rho=0.01"
                )
            amount = charge_amount(parse_rho(request.rho))
        else:
            if request.rho or not request.epsilon:
                raise PlanError(
                    f"dataset {query.dataset!r} accounts privacy in epsilon (pure DP): pass "
                    "release(plan, epsilon=...), e.g. epsilon=0.1"
                )
            amount = charge_amount(parse_epsilon(request.epsilon))
        if policy is not None:  # before any pricing or charge
            zcdp = handle.schema.zcdp
            policy.check_release(
                query.dataset, Decimal(0) if zcdp else amount, amount if zcdp else Decimal(0)
            )
            if (
                policy.min_count is not None
                and query.group_by
                and not any(a.op == "count" for a in query.aggs)
            ):
                raise PlanError(
                    f"dataset {query.dataset!r} suppresses groups with fewer than "
                    f"{policy.min_count} rows (its provider's policy): include count() "
                    "in agg(...), whose noisy value decides"
                )
        return _compiler.price(query, handle, amount, delta, owner=principal), policy

    def _view(self, principal: str, dataset: str) -> tuple[DatasetHandle, Policy | None]:
        """The granted dataset as the policy in force shows it, and that policy.

        Read once per release, so a release is priced, checked and evaluated
        under one version of the policy.
        """
        handle = self._granted(principal, dataset)
        version = self._ledger.policy(dataset)
        if version is None:
            return handle, None
        policy = version.policy
        return handle.restricted(policy.allowed_columns, policy.bounds), policy

    def _release(self, job: JobRecord, request: ReleaseRequest) -> Any:
        if self._store.is_final(job.id):
            # Cancelled through another replica: this one learns it here, before
            # anything more is charged.
            raise JobCancelled("the job was cancelled")
        priced, policy = self._price(job.principal, request)
        query, epsilon, delta = priced.query, priced.epsilon, priced.delta
        self._ledger.debit(
            job.principal,
            query.dataset,
            epsilon,
            delta=delta,
            rho=priced.rho,
            job_id=job.id,
            release_index=request.index,
            dataset_version=priced.dataset.version,
        )
        self._store.add_release(
            job.id,
            request.index,
            query.dataset,
            to_wire(query),
            to_quanta(epsilon),
            _mechanisms(priced),
            to_quanta(delta, quantum=DELTA_QUANTUM),
            to_quanta(priced.rho),
            priced.dataset.version,
        )
        self._notify(job.id)
        with self._evaluations:
            started = time.monotonic()  # the padding covers this release's own work
            try:
                value = _compiler.evaluate(priced)
                if policy is not None and policy.min_count is not None:
                    value = _compiler.suppress(value, query, policy.min_count)
            finally:  # a failure is padded too: how soon it came could depend on the data
                # Inside the slot: a release queued behind this one must not
                # see how long it took unpadded.
                _pad(started, self.limits.release_quantum_seconds)
        TRIMMER.poke()
        self._store.set_release_value(job.id, request.index, value)
        return value

    # --- cost preview ---------------------------------------------------------------

    def estimate(
        self,
        principal: str,
        dataset: str,
        script: str,
        cancel: threading.Event | None = None,
    ) -> CostEstimate:
        """Run ``script`` against a cost-only host and price every release.

        Each release is priced exactly as a submission would price it; none is
        charged and no data is read. The host answers with placeholder values, so
        a script whose releases depend on earlier released values may take
        another path when submitted.

        Raises:
            The errors a submission would meet (script, plan, dataset, epsilon),
            synchronously.
        """
        if not self._accepting:
            raise ServiceStopping("the server is shutting down; retry later")
        compile_script(script)
        self._granted(principal, dataset)
        if not self._previews.acquire(timeout=5):
            raise ResourceLimit("too many cost previews are running; retry in a few seconds")
        try:
            return self._estimate(principal, dataset, script, cancel)
        finally:
            self._previews.release()

    def _estimate(
        self, principal: str, dataset: str, script: str, cancel: threading.Event | None
    ) -> CostEstimate:
        releases: list[ReleaseRecord] = []

        def on_release(request: ReleaseRequest) -> Any:
            priced, _policy = self._price(principal, request)
            releases.append(
                ReleaseRecord(
                    index=request.index,
                    dataset=priced.query.dataset,
                    plan=to_wire(priced.query),
                    epsilon=priced.epsilon,
                    mechanism=_mechanisms(priced),
                    value=None,
                    delta=priced.delta,
                    rho=priced.rho,
                )
            )
            return _compiler.placeholder(priced)

        run_worker(script, dataset, self.limits, on_release, cancel, self.isolation)
        spent: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
        for r in releases:
            eps, delta, rho = spent.get(r.dataset, (Decimal(0), Decimal(0), Decimal(0)))
            spent[r.dataset] = (eps + r.epsilon, delta + r.delta, rho + r.rho)
        budgets = [self._ledger.balance(principal, name) for name in sorted(spent)]
        return CostEstimate(
            releases=tuple(releases),
            budgets=tuple(budgets),
            fits_budget=all(
                spent[b.dataset][0] <= b.epsilon_remaining
                and spent[b.dataset][1] <= b.delta_remaining
                and spent[b.dataset][2] <= b.rho_remaining
                for b in budgets
            ),
        )

    # --- shutdown -------------------------------------------------------------------

    def shutdown(self, grace: float = 30.0) -> None:
        """Stop accepting jobs, let running ones finish for ``grace`` s, then cancel them."""
        self._accepting = False
        done = threading.Event()

        def _wait() -> None:
            self._pool.shutdown(wait=True)
            done.set()

        threading.Thread(target=_wait, daemon=True).start()
        if not done.wait(grace):
            for event in list(self._cancels.values()):
                event.set()
            done.wait(10)


def _pad(started: float, quantum: float) -> None:
    """Sleep until a whole number of ``quantum`` seconds have passed since ``started``.

    The duration of an evaluation depends on the data (how many rows a filter
    keeps, how many distinct keys a group-by finds); rounded up to a quantum
    longer than the evaluation itself, what the researcher can time is the
    quantum, not the data (bench/timing_channel.py measures the gap).
    """
    if quantum <= 0:
        return
    elapsed = time.monotonic() - started
    time.sleep(max(math.ceil(elapsed / quantum), 1) * quantum - elapsed)


class _Trimmer(threading.Thread):
    """Gives the heap that evaluations freed back to the operating system.

    OpenDP's evaluation allocates a release's working set with the C
    allocator and frees it afterwards, but glibc keeps freed memory mapped (a
    release on 10M rows left ~0.2 GB behind, measured). ``malloc_trim``
    returns it; it is called off the jobs' threads, once evaluations have been
    quiet for a moment, so no release waits for it. (Polars' own allocator,
    jemalloc, is tuned by ``enclave serve`` instead: `enclave._cli.JEMALLOC_CONF`.)
    """

    def __init__(self, quiet: float = 0.25) -> None:
        super().__init__(name="enclave-trim", daemon=True)
        self._quiet = quiet
        self._poked = threading.Event()
        self._lock = threading.Lock()
        self._launched = False
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name else None
        self._trim = getattr(libc, "malloc_trim", None)

    def poke(self) -> None:
        """An evaluation ended: trim once things are quiet."""
        if self._trim is None:
            return  # not glibc: nothing to call
        with self._lock:
            if not self._launched:
                self._launched = True
                self.start()
        self._poked.set()

    def run(self) -> None:
        assert self._trim is not None
        while True:
            self._poked.wait()
            self._poked.clear()
            while self._poked.wait(self._quiet):  # until no poke for `quiet` seconds
                self._poked.clear()
            self._trim(0)


TRIMMER = _Trimmer()


def _cores() -> int:
    """Cores this process may run on (a container's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 2
