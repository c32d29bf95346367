"""Host side of the sandbox: start a worker, serve its release requests, enforce limits."""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import IO, Any

from .._errors import (
    JobCancelled,
    JobError,
    PlanError,
    ResourceLimit,
    ResultRejected,
    SandboxUnavailable,
    ScriptFailed,
    ScriptRejected,
    WallClockLimit,
)
from ._protocol import ProtocolError, recv, send

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-job limits. Defaults suit interactive research jobs."""

    cpu_seconds: int = 60
    memory_mb: int = 512
    wall_seconds: float = 300.0
    max_result_bytes: int = 1024 * 1024
    max_printed_bytes: int = 64 * 1024
    max_releases: int = 1000
    #: Pad each release's evaluation on the data to a whole number of these
    #: seconds (0: no padding), so that its duration says less about the data
    #: (docs/security.md, "Timing"). Host-side only.
    release_quantum_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    """What the worker asked for: an untrusted plan (JSON), ε or ρ, and δ (as text).

    The amount the dataset does not account in is the empty string.
    """

    index: int
    plan: Any
    epsilon: str
    delta: str = "0"
    rho: str = ""


@dataclass(frozen=True, slots=True)
class WorkerOutcome:
    """A finished script: its JSON result and printed text."""

    result: Any
    printed: str


_FAILURE_KINDS: dict[str, Callable[[str], JobError]] = {
    "ScriptRejected": ScriptRejected,
    "PlanError": PlanError,
    "ResultRejected": ResultRejected,
    "ScriptFailed": ScriptFailed,
    "MemoryError": lambda _m: ResourceLimit("the job exceeded its memory limit"),
    "SandboxUnavailable": SandboxUnavailable,
}


@dataclass(frozen=True, slots=True)
class Isolation:
    """How workers isolate themselves (see `jobs._sandbox._isolation`).

    ``hide`` is the directory workers must not see (the server's data dir);
    with ``strict``, a job whose worker could not apply every layer fails.
    """

    hide: str | None = None
    strict: bool = False


class _Watchdog(threading.Thread):
    """Kills the worker at the wall-clock limit or on cancellation."""

    def __init__(self, proc: _Worker, wall: float, cancel: threading.Event):
        super().__init__(daemon=True)
        self.proc, self.deadline, self.cancel = proc, time.monotonic() + wall, cancel
        self.finished = threading.Event()
        self.reason: str | None = None

    def run(self) -> None:
        while not self.finished.wait(0.05):
            if self.cancel.is_set():
                self.reason = "cancelled"
            elif time.monotonic() >= self.deadline:
                self.reason = "wall"
            else:
                continue
            _kill(self.proc)
            return


def _end(proc: _Worker) -> None:
    """Kill the worker (if still there), reap it and close the host's pipe ends."""
    _kill(proc)
    proc.wait()
    # A reply may still sit in stdin's buffer if the worker died mid-release;
    # flushing it into the dead pipe must not mask the real outcome.
    with contextlib.suppress(OSError):
        proc.stdin.close()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]


def _kill(proc: _Worker) -> None:
    if isinstance(proc, _Forked) and proc.returncode is not None:
        return  # reaped by the template: its pid may already be another process's
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        # A forked worker killed before its setsid() is not a group leader yet.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)
    except PermissionError:  # a worker that became nobody, of a non-root host: gone
        pass


def run_worker(
    script: str,
    dataset: str,
    limits: Limits,
    on_release: Callable[[ReleaseRequest], Any],
    cancel: threading.Event | None = None,
    isolation: Isolation | None = None,
) -> WorkerOutcome:
    """Run ``script`` in a fresh worker process; serve releases with ``on_release``.

    ``on_release`` either returns the JSON release or raises; a raise ends the job
    (the worker is killed) and propagates to the caller.

    Raises:
        JobError: script rejected or failed, limits hit, cancelled.
        Exception: whatever ``on_release`` raised.
    """
    cancel = cancel or threading.Event()
    isolation = isolation or Isolation()
    proc, workdir = _take()
    assert proc.stdin is not None
    assert proc.stdout is not None
    watchdog = _Watchdog(proc, limits.wall_seconds, cancel)
    watchdog.start()
    try:
        return _converse(proc, script, dataset, limits, on_release, watchdog, isolation)
    finally:
        watchdog.finished.set()
        # The outcome is known: the worker is killed and reaped off the job's path.
        _REAPER.put((proc, workdir))


def probe_isolation(
    isolation: Isolation | None = None, *, port: int = 9, secret: str | None = None
) -> dict[str, Any]:
    """Start a worker that applies every layer and tests what it could still do.

    Args:
        isolation: as jobs get it.
        port: a loopback port the worker tries to connect to.
        secret: a file (under the hidden directory) the worker tries to read.

    Returns:
        ``{"layers": {name: "active" | "unavailable: why"}, "checks": {what: could}}``
        where ``checks`` say whether the worker could still connect to ``port``,
        read ``secret``, create a file, fork, read this process's memory through
        ``/proc`` or signal it.
    """
    isolation = isolation or Isolation()
    proc, workdir = _take()
    with workdir:
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            send(
                proc.stdin,
                {
                    "probe": True,
                    "hide": isolation.hide,
                    "limits": asdict(Limits()),
                    "port": port,
                    "secret": secret,
                    "host": os.getpid(),
                },
            )
            reply = recv(proc.stdout)
        finally:
            _end(proc)
    if not isinstance(reply, dict) or reply.get("op") != "probe":
        raise ProtocolError("the probe worker did not answer")
    return {"layers": reply["layers"], "checks": reply["checks"]}


#: Workers the template keeps forked ahead of jobs.
SPARES = 2


class _Forked:
    """A worker forked by the template: the parts of ``Popen`` the runner uses."""

    def __init__(self, server: _ForkServer, pid: int, stdin: IO[bytes], stdout: IO[bytes]):
        self._server = server
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout

    @property
    def returncode(self) -> int | None:
        return self._server.status(self.pid)

    def wait(self, timeout: float | None = None) -> int | None:
        self._server.wait(self.pid, timeout)
        return self.returncode


class _ForkServer:
    """The host's end of the template process (`jobs._sandbox._template`).

    One per server process, started on first use. A reader thread dispatches
    the template's replies (a fork's pid) and notices (a child's exit status).
    If the template dies, every worker it forked is reported killed and the
    next job starts a new template.
    """

    def __init__(self) -> None:
        import socket

        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-m", "jobs._sandbox._template", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={},
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Any] = {}
        self._status: dict[int, int] = {}
        self._exited: dict[int, threading.Event] = {}
        self.alive = True
        self._spares: collections.deque[tuple[_Forked, tempfile.TemporaryDirectory[str]]] = (
            collections.deque()
        )
        self._refill = threading.Event()
        threading.Thread(target=self._read, name="enclave-template", daemon=True).start()
        threading.Thread(target=self._keep_spares, name="enclave-spares", daemon=True).start()
        self._refill.set()

    def take(self) -> tuple[_Forked, tempfile.TemporaryDirectory[str]]:
        """A spare worker (forked ahead, never used) and its directory, else a new one.

        Each is handed out once; the pool is refilled in the background, so a
        job does not wait for a fork.
        """
        stale = []
        found = None
        with self._lock:
            while self._spares and found is None:
                worker, workdir = self._spares.popleft()
                if worker.pid in self._status:  # died while waiting (template gone?)
                    stale.append((worker, workdir))
                else:
                    found = (worker, workdir)
        self._refill.set()
        for worker, workdir in stale:
            _REAPER.put((worker, workdir))
        if found is not None:
            return found
        workdir = tempfile.TemporaryDirectory(prefix="enclave-job-")
        try:
            return self.spawn(workdir.name), workdir
        except BaseException:
            workdir.cleanup()
            raise

    def _keep_spares(self) -> None:
        while self.alive:
            self._refill.wait(1.0)
            self._refill.clear()
            while self.alive and len(self._spares) < SPARES:
                workdir = tempfile.TemporaryDirectory(prefix="enclave-job-")
                try:
                    worker = self.spawn(workdir.name)
                except OSError:
                    workdir.cleanup()
                    break
                with self._lock:
                    self._spares.append((worker, workdir))

    def _read(self) -> None:
        import json

        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            message = json.loads(data)
            with self._lock:
                if "exit" in message:
                    pid = int(message["exit"])
                    self._status[pid] = int(message["status"])
                    self._exited.setdefault(pid, threading.Event()).set()
                else:
                    if "pid" in message:
                        # A new child: its pid may be an earlier child's, reused.
                        pid = int(message["pid"])
                        self._status.pop(pid, None)
                        self._exited[pid] = threading.Event()
                    waiter = self._pending.pop(int(message["id"]), None)
                    if waiter is not None:
                        waiter.append(message)
                        waiter[0].set()
        with self._lock:  # the template is gone: its children must go too
            self.alive = False
            for pid, event in self._exited.items():
                if not event.is_set():
                    # Still alive (not reaped: its pid is still its own), now
                    # adopted by init: kill it here, nobody else can.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                    self._status.setdefault(pid, -signal.SIGKILL)
                    event.set()
            for waiter in self._pending.values():
                waiter[0].set()
            self._pending.clear()
            spares = list(self._spares)
            self._spares.clear()
        for item in spares:  # their pipes and directories
            _REAPER.put(item)

    def spawn(self, workdir: str) -> _Forked:
        """Fork a worker working in ``workdir``, on two new pipes."""
        import json
        import socket

        child_in, host_in = os.pipe()
        host_out, child_out = os.pipe()
        waiter: list[Any] = [threading.Event()]
        try:
            with self._lock:
                if not self.alive:
                    raise OSError("the template process is gone")
                request_id = next(self._ids)
                self._pending[request_id] = waiter
            payload = json.dumps({"id": request_id, "workdir": workdir}).encode()
            socket.send_fds(self._sock, [payload], [child_in, child_out])
        except BaseException:
            for fd in (child_in, host_in, host_out, child_out):
                os.close(fd)
            raise
        os.close(child_in)
        os.close(child_out)
        if not waiter[0].wait(10) or len(waiter) < 2 or "pid" not in waiter[1]:
            os.close(host_in)
            os.close(host_out)
            raise OSError("the template process did not fork a worker")
        return _Forked(
            self, int(waiter[1]["pid"]), os.fdopen(host_in, "wb"), os.fdopen(host_out, "rb")
        )

    def status(self, pid: int) -> int | None:
        with self._lock:
            return self._status.get(pid)

    def wait(self, pid: int, timeout: float | None = None) -> None:
        """Until the child ``pid`` has exited; may be called any number of times.

        Its status is kept until the template forks another child with the same pid.
        """
        with self._lock:
            if pid in self._status:
                return
            event = self._exited.setdefault(pid, threading.Event())
        event.wait(timeout)

    def close(self) -> None:
        self.alive = False
        with self._lock:
            spares = list(self._spares)
            self._spares.clear()
        for item in spares:
            _REAPER.put(item)
        self._sock.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()


_Worker = subprocess.Popen[bytes] | _Forked

_template_lock = threading.Lock()
_template: _ForkServer | None = None


def spare_pids(timeout: float = 10.0) -> set[int]:
    """Pids of the spare workers waiting for a job (forked, never used).

    Waits (up to ``timeout``) for the pool to be full first, so that a fork
    under way is not mistaken for a job's worker (tests look at /proc).
    """
    server = _template
    if server is None:
        return set()
    deadline = time.monotonic() + timeout
    while server.alive and time.monotonic() < deadline:
        with server._lock:
            if len(server._spares) >= SPARES:
                break
        time.sleep(0.005)
    with server._lock:
        return {worker.pid for worker, _dir in server._spares}


def _fork_server() -> _ForkServer | None:
    """The template, started on first use (None where it cannot run)."""
    global _template
    with _template_lock:
        if _template is None or not _template.alive:
            try:
                _template = _ForkServer()
            except OSError:
                _template = None
        return _template


def _take() -> tuple[_Worker, tempfile.TemporaryDirectory[str]]:
    """A fresh worker for one job, and the private directory it works in.

    From the template's spare workers (forked before the job arrived, never
    used), else forked now, else a new interpreter.
    """
    if os.environ.get("ENCLAVE_NO_TEMPLATE") != "1":
        server = _fork_server()
        if server is not None:
            try:
                return server.take()
            except OSError:
                pass  # a template that just died: fall back, the next job starts another
    workdir = tempfile.TemporaryDirectory(prefix="enclave-job-")
    try:
        return _spawn(workdir.name), workdir
    except BaseException:
        workdir.cleanup()
        raise


class _Reaper(threading.Thread):
    """Kills, reaps and cleans up after finished workers, off the jobs' threads.

    A worker that has sent its outcome can do nothing more that reaches
    anyone: its pipes are no longer read. Waiting for it to exit (~ms through
    the template) would only delay the researcher's result.
    """

    def __init__(self) -> None:
        super().__init__(name="enclave-reaper", daemon=True)
        self._queue: queue.SimpleQueue[tuple[_Worker, tempfile.TemporaryDirectory[str]]] = (
            queue.SimpleQueue()
        )
        self._launched = False
        self._lock = threading.Lock()
        self._pending = 0
        self._done = threading.Condition(self._lock)

    def put(self, item: tuple[_Worker, tempfile.TemporaryDirectory[str]]) -> None:
        _kill(item[0])  # at once: nothing of it may outlive its job for long
        with self._lock:
            if not self._launched:
                self._launched = True
                self.start()
            self._pending += 1
        self._queue.put(item)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until every worker handed over so far is reaped (tests, shutdown)."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def run(self) -> None:
        while True:
            proc, workdir = self._queue.get()
            try:
                _end(proc)
            except Exception:  # pragma: no cover - a pipe already gone: nothing to free
                log.exception("reaping a worker failed")
            finally:
                workdir.cleanup()
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()


_REAPER = _Reaper()


def _spawn(workdir: str) -> _Worker:
    """A new worker interpreter (where no template runs) working in ``workdir``."""
    return subprocess.Popen(
        [sys.executable, "-I", "-m", "jobs._sandbox._worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={},
        cwd=workdir,
        close_fds=True,
        start_new_session=True,
    )


def _converse(
    proc: _Worker,
    script: str,
    dataset: str,
    limits: Limits,
    on_release: Callable[[ReleaseRequest], Any],
    watchdog: _Watchdog,
    isolation: Isolation,
) -> WorkerOutcome:
    assert proc.stdin is not None
    assert proc.stdout is not None
    released = 0
    try:
        send(
            proc.stdin,
            {
                "script": script,
                "dataset": dataset,
                "limits": asdict(limits),
                "hide": isolation.hide,
                "strict": isolation.strict,
            },
        )
        while True:
            message = recv(proc.stdout)
            if not isinstance(message, dict):
                raise ProtocolError("message is not an object")
            op = message.get("op")
            if op == "release":
                if released >= limits.max_releases:
                    raise ResourceLimit(f"a job may make at most {limits.max_releases} releases")
                request = ReleaseRequest(
                    released,
                    message.get("plan"),
                    str(message.get("epsilon", "")),
                    str(message.get("delta", "0")),
                    str(message.get("rho", "")),
                )
                released += 1
                value = on_release(request)
                send(proc.stdin, {"ok": True, "release": value})
            elif op == "done":
                return _outcome(message, limits)
            elif op == "failed":
                factory = _FAILURE_KINDS.get(str(message.get("kind")), ScriptFailed)
                raise factory(str(message.get("message"))[:4000])
            else:
                raise ProtocolError(f"unknown op {op!r}")
    except (EOFError, BrokenPipeError, ProtocolError) as err:
        if isinstance(err, ProtocolError):
            _kill(proc)  # a worker that breaks the protocol is not waited for
        proc.wait()
        if watchdog.reason == "cancelled":
            raise JobCancelled("the job was cancelled") from None
        if watchdog.reason == "wall":
            raise WallClockLimit(
                f"the job ran longer than its wall-clock limit of {limits.wall_seconds:g} s"
            ) from None
        if isinstance(err, ProtocolError):
            raise ScriptFailed(f"the job's worker broke the host protocol: {err}") from None
        if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            raise ResourceLimit(
                f"the job used more than its CPU limit of {limits.cpu_seconds} s"
            ) from None
        raise ResourceLimit(
            f"the job's worker process ended unexpectedly (exit status {proc.returncode}), "
            f"most likely at its memory limit of {limits.memory_mb} MiB"
        ) from err


def _outcome(message: dict[str, Any], limits: Limits) -> WorkerOutcome:
    import json

    result = message.get("result")
    size = len(json.dumps(result))
    if size > limits.max_result_bytes:
        raise ResultRejected(
            f"the result is {size} bytes, more than the limit of {limits.max_result_bytes}"
        )
    printed = message.get("printed")
    if not isinstance(printed, str):
        printed = ""
    # The worker truncates too, but the host does not rely on untrusted code for it.
    if len(printed.encode()) > limits.max_printed_bytes:
        printed = printed.encode()[: limits.max_printed_bytes].decode(errors="ignore")
        printed += "\n[output truncated]"
    return WorkerOutcome(result, printed)
