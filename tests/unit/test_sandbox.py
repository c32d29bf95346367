"""The sandbox, driven for real: each test starts a fresh worker process through
`jobs._sandbox.run_worker` and plays the trusted host with a fake ``on_release``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from RestrictedPython.Guards import safer_getattr

from jobs import (
    JobCancelled,
    JobError,
    PlanError,
    ResourceLimit,
    ResultRejected,
    ScriptFailed,
    ScriptRejected,
    WallClockLimit,
)
from jobs._api import (
    Aggregate,
    ColumnExpr,
    Frame,
    GroupedFrame,
    ReleasablePlan,
    Released,
    make_namespace,
)
from jobs._plan import to_wire
from jobs._sandbox import Limits, ReleaseRequest, WorkerOutcome, _runner, run_worker

LIMITS = Limits(cpu_seconds=2, memory_mb=256, wall_seconds=10)
SCALAR = {"value": 42, "ci95": [40, 44]}
HAS_PROC = os.path.isdir(f"/proc/{os.getpid()}")


def fake_release(plan: dict[str, Any]) -> Any:
    """The host's JSON release for a wire plan, by shape."""
    if plan["shape"] == "scalar":
        return dict(SCALAR)
    if plan["shape"] == "record":
        return {a["alias"]: dict(SCALAR) for a in plan["aggs"]}
    return [
        {
            **{g: f"{g}{i}" for g in plan["group_by"]},
            **{a["alias"]: dict(SCALAR) for a in plan["aggs"]},
        }
        for i in range(2)
    ]


class Host:
    """A fake trusted host: records every request, optionally runs a hook first."""

    def __init__(self, hook: Callable[[ReleaseRequest], None] | None = None) -> None:
        self.requests: list[ReleaseRequest] = []
        self.hook = hook

    def __call__(self, request: ReleaseRequest) -> Any:
        self.requests.append(request)
        if self.hook is not None:
            self.hook(request)
        return fake_release(request.plan)


def run(script: str, limits: Limits = LIMITS, **kw: Any) -> tuple[WorkerOutcome, Host]:
    host = kw.pop("host", None) or Host()
    outcome = run_worker(textwrap.dedent(script), "ds", limits, host, **kw)
    return outcome, host


def worker_pids() -> list[int]:
    """Pids of this process's live sandbox workers, read from /proc.

    A worker is a child of this process running ``jobs._sandbox._worker``, or a
    child of this process's template (``jobs._sandbox._template``), which forks them;
    the template's spares (forked ahead, waiting for a job) are not counted. Workers
    of finished jobs are reaped in the background: this waits for that first.
    """
    _runner._REAPER.wait_idle()
    spares = _runner.spare_pids()
    me = os.getpid()
    procs: dict[int, tuple[int, bytes, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                tail = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except (OSError, IndexError, ValueError):
            continue
        procs[int(entry)] = (int(tail[1]), cmdline, tail[0])
    templates = {
        pid for pid, (ppid, cmd, _s) in procs.items() if ppid == me and b"_template" in cmd
    }
    return [
        pid
        for pid, (ppid, cmd, state) in procs.items()
        if state != "Z"
        and pid not in spares
        and (
            (ppid == me and b"jobs._sandbox._worker" in cmd)
            or (ppid in templates and b"_template" in cmd)
        )
    ]


# --- the normal path ----------------------------------------------------------------


def test_normal_script_releases_post_processes_prints_and_returns_json() -> None:
    outcome, host = run(
        """
        stays = dataset()
        n = release(stays.filter(col("age") >= 18).count(), epsilon=0.5)
        rec = release(stays.agg(count(), mean("nights", bounds=(1, 14))), epsilon=0.25)
        rows = release(stays.group_by("region").agg(sum("spend")), epsilon=1)
        total = sum([n, rec["count"]])          # builtin sum over released values
        share = n / total
        spend = sum([row["sum_spend"] for row in rows], 0.5)
        print("n is", n.value, "ci", n.ci95)
        result["n"] = n
        result["total"] = total
        result["share"] = share
        result["twice"] = n * 2 + 1
        result["spend"] = spend
        result["regions"] = [row["region"] for row in rows]
        result["mean"] = rec["mean_nights"]
        """
    )
    assert outcome.result == {
        "n": {
            "value": 42,
            "ci95": [40, 44],
            "aggregate": None,
            "column": None,
            "mechanism": None,
            "noise_scale": None,
        },
        "total": 84,
        "share": 0.5,
        "twice": 85,
        "spend": 84.5,
        "regions": ["region0", "region1"],
        "mean": {
            "value": 42,
            "ci95": [40, 44],
            "aggregate": None,
            "column": None,
            "mechanism": None,
            "noise_scale": None,
        },
    }
    assert outcome.printed == "n is 42 ci (40, 44)\n"
    assert [r.index for r in host.requests] == [0, 1, 2]
    assert [r.epsilon for r in host.requests] == ["0.5", "0.25", "1"]
    first = host.requests[0].plan
    assert first == {
        "dataset": "ds",
        "filters": [{"op": "ge", "args": [{"col": "age"}, {"lit": 18}]}],
        "group_by": [],
        "aggs": [{"op": "count", "column": None, "bounds": None, "alias": "count"}],
        "shape": "scalar",
        "bins": None,
        "derived": [],
    }
    assert host.requests[1].plan["shape"] == "record"
    assert host.requests[1].plan["aggs"][1]["bounds"] == [1, 14]
    assert host.requests[2].plan["shape"] == "table"
    json.dumps(outcome.result, allow_nan=False)


def test_script_errors_come_back_as_script_failed_with_the_script_text() -> None:
    with pytest.raises(ScriptFailed, match=r"^ValueError: boom$"):
        run('raise ValueError("boom")')


def test_plan_errors_in_the_script_come_back_as_plan_error() -> None:
    with pytest.raises(PlanError, match="takes an aggregate plan"):
        run("release(dataset(), epsilon=1)")


def test_release_count_is_capped_by_the_host() -> None:
    host = Host()
    script = "for i in range(5):\n    release(dataset().count(), epsilon=1)"
    with pytest.raises(ResourceLimit, match="at most 2 releases"):
        run(
            script, Limits(cpu_seconds=2, memory_mb=256, wall_seconds=10, max_releases=2), host=host
        )
    assert len(host.requests) == 2


# --- what a script cannot do --------------------------------------------------------

FORBIDDEN = {
    "import": "import os",
    "from import": "from os import path",
    "__import__": '__import__("os")',
    "open": 'open("/etc/passwd")',
    "subclasses walk": "().__class__.__bases__[0].__subclasses__()",
    "getattr dunder": 'getattr(dataset, "__globals__")',
    "eval": 'eval("1")',
    "exec": 'exec("x=1")',
    "type": "type(1)",
    "private facade attribute": "dataset()._dataset",
    "private attribute via name": "x = col('a')\nx._node",
    "private release fn": "release._q",
    "str.format dunder": '"{0.__class__}".format(1)',
    "str.format on the type": 'str.format("{0.__globals__}", dataset)',
    "format_map": '"{a.__class__}".format_map({"a": 1})',
    "globals": "globals()",
    "vars": "vars()",
    "locals": "locals()",
    "dir": "dir(dataset)",
    "compile": 'compile("1", "<x>", "exec")',
    "class statement": "class A:\n    pass",
    "setattr": 'setattr(dataset(), "x", 1)',
    "attribute write": "d = dataset()\nd.x = 1",
    "generator frame": "g = (x for x in [1])\ng.gi_frame",
    "traceback": "try:\n    1/0\nexcept Exception as e:\n    e.__traceback__",
    "builtins": "__builtins__",
    "input": "input()",
    "breakpoint": "breakpoint()",
}


@pytest.mark.parametrize("name", list(FORBIDDEN))
def test_forbidden_operations_end_the_job_before_any_release(name: str) -> None:
    host = Host()
    script = FORBIDDEN[name] + '\nresult["n"] = release(dataset().count(), epsilon=1)\n'
    with pytest.raises((ScriptRejected, ScriptFailed)):
        run(script, host=host)
    assert host.requests == []


# --- limits ----------------------------------------------------------------------------


def test_infinite_loop_is_killed_at_the_cpu_limit() -> None:
    start = time.monotonic()
    with pytest.raises(ResourceLimit, match="CPU limit of 1 s") as info:
        run("while True:\n    pass", Limits(cpu_seconds=1, memory_mb=256, wall_seconds=30))
    assert not isinstance(info.value, WallClockLimit)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("bomb", ["x = [0] * (10**9)", 's = "a" * (10**10)'])
def test_memory_bomb_ends_with_resource_limit(bomb: str) -> None:
    with pytest.raises(ResourceLimit, match="memory") as info:
        run(bomb)
    assert not isinstance(info.value, WallClockLimit)


def test_a_worker_blocked_on_the_host_is_killed_by_the_wall_clock() -> None:
    # The unsent reply left in stdin's buffer must not mask WallClockLimit.
    host = Host(hook=lambda _request: time.sleep(2.5))
    start = time.monotonic()
    with pytest.raises(WallClockLimit, match=r"wall-clock limit of 1\.5 s"):
        run(
            'result["n"] = release(dataset().count(), epsilon=1)',
            Limits(cpu_seconds=60, memory_mb=256, wall_seconds=1.5),
            host=host,
        )
    assert len(host.requests) == 1
    assert time.monotonic() - start < 8


def test_a_busy_worker_is_killed_by_the_wall_clock() -> None:
    with pytest.raises(WallClockLimit):
        run("while True:\n    pass", Limits(cpu_seconds=60, memory_mb=256, wall_seconds=1))


def test_cancellation() -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(JobCancelled):
            run(
                "while True:\n    pass",
                Limits(cpu_seconds=60, memory_mb=256, wall_seconds=60),
                cancel=cancel,
            )
    finally:
        timer.cancel()
    assert time.monotonic() - start < 5


def test_cancellation_while_the_host_serves_a_release() -> None:
    # The reply to the killed worker stays in stdin's buffer; closing it must not
    # replace JobCancelled with BrokenPipeError.
    cancel = threading.Event()

    def slow(_request: ReleaseRequest) -> None:
        cancel.set()
        time.sleep(0.5)

    with pytest.raises(JobCancelled):
        run(
            'result["n"] = release(dataset().count(), epsilon=1)',
            Limits(cpu_seconds=60, memory_mb=256, wall_seconds=60),
            host=Host(hook=slow),
            cancel=cancel,
        )


# --- the result --------------------------------------------------------------------------

NOT_RESULTS = {
    "frame": "result['x'] = dataset()",
    "filtered frame": "result['x'] = dataset().filter(col('a') > 1)",
    "grouped frame": "result['x'] = dataset().group_by('g')",
    "plan": "result['x'] = dataset().count()",
    "expression": "result['x'] = col('a') + 1",
    "aggregate": "result['x'] = mean('a')",
    "plan as the whole result": "result = dataset().count()",
    "nan": "result['x'] = float('nan')",
    "inf": "result['x'] = [float('inf')]",
    "function": "result['x'] = release",
    "exception": "try:\n    1/0\nexcept Exception as e:\n    result['x'] = e",
    "type": "result['x'] = dict",
    "non-string key": "result[(1, 2)] = 1",
}


@pytest.mark.parametrize("name", list(NOT_RESULTS))
def test_result_must_be_json_of_released_values(name: str) -> None:
    with pytest.raises(ResultRejected):
        run(NOT_RESULTS[name])


def test_result_over_max_result_bytes_is_rejected() -> None:
    limits = Limits(cpu_seconds=2, memory_mb=256, wall_seconds=10, max_result_bytes=1000)
    outcome, _ = run('result["x"] = "a" * 900', limits)
    assert outcome.result == {"x": "a" * 900}
    with pytest.raises(ResultRejected, match="more than the limit of 1000"):
        run('result["x"] = "a" * 1000', limits)


def test_printed_output_is_truncated() -> None:
    limits = Limits(cpu_seconds=2, memory_mb=256, wall_seconds=10, max_printed_bytes=100)
    outcome, _ = run('print("x" * 1000)', limits)
    assert outcome.printed == "x" * 100 + "\n[output truncated]"


# --- the host side of a failure ---------------------------------------------------------


def test_when_on_release_raises_run_worker_reraises_and_the_worker_is_gone() -> None:
    error = PlanError("x")
    pids: list[int] = []

    def refuse(_request: ReleaseRequest) -> None:
        if HAS_PROC:
            pids.extend(worker_pids())
        raise error

    host = Host(hook=refuse)
    with pytest.raises(PlanError, match=r"^x$") as info:
        run('result["n"] = release(dataset().count(), epsilon=1)\nwhile True:\n    pass', host=host)
    assert info.value is error
    assert len(host.requests) == 1
    if HAS_PROC:
        assert len(pids) == 1
        assert _runner._REAPER.wait_idle()  # killed at once, reaped in the background
        assert not os.path.exists(f"/proc/{pids[0]}")
        assert worker_pids() == []


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
def test_worker_environment_cwd_fds_and_rlimits() -> None:
    seen: dict[str, Any] = {}

    def inspect(_request: ReleaseRequest) -> None:
        [pid] = worker_pids()
        with open(f"/proc/{pid}/environ", "rb") as fh:
            seen["environ"] = fh.read()
        seen["cwd"] = os.readlink(f"/proc/{pid}/cwd")
        seen["cwd_listing"] = os.listdir(seen["cwd"])
        seen["cwd_mode"] = stat.S_IMODE(os.stat(seen["cwd"]).st_mode)
        fd_dir = f"/proc/{pid}/fd"
        seen["fds"] = {int(fd): os.readlink(f"{fd_dir}/{fd}") for fd in os.listdir(fd_dir)}
        with open(f"/proc/{pid}/limits") as fh:
            seen["limits"] = fh.read()

    run('result["n"] = release(dataset().count(), epsilon=1)', host=Host(hook=inspect))

    assert seen["environ"] == b""
    cwd = Path(seen["cwd"])
    assert cwd.name.startswith("enclave-job-")
    assert cwd.parent == Path(tempfile.gettempdir()).resolve()
    assert seen["cwd_listing"] == []
    assert seen["cwd_mode"] == 0o700
    assert _runner._REAPER.wait_idle()  # teardown runs off the job's thread
    assert not cwd.exists(), "the private working directory outlives the job"
    targets = seen["fds"].values()
    assert all(t.startswith("pipe:") or t == "/dev/null" for t in targets), seen["fds"]
    assert sum(t.startswith("pipe:") for t in targets) == 2
    lines = {line[:26].strip(): line[26:].split() for line in seen["limits"].splitlines()[1:]}
    assert lines["Max cpu time"][:2] == ["2", "3"]
    assert lines["Max file size"][:2] == ["0", "0"]
    assert lines["Max core file size"][:2] == ["0", "0"]
    assert lines["Max open files"][:2] == ["16", "16"]
    assert lines["Max processes"][:2] == ["0", "0"]
    assert lines["Max address space"][:2] == [str(256 * 2**20)] * 2


def test_worker_does_not_import_data_libraries(tmp_path: Path) -> None:
    code = (
        "import jobs._sandbox._worker, sys; "
        "print(any(m in sys.modules for m in ('polars','opendp','sqlalchemy')))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        env={},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "False"


# --- capability walk --------------------------------------------------------------------

FACADE_TYPES = (ColumnExpr, Frame, GroupedFrame, ReleasablePlan, Aggregate, Released)
PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes, tuple, list, dict)
FORBIDDEN_ROOTS = {"polars", "opendp", "sqlalchemy", "pyarrow", "subprocess", "os", "io", "_io"}


def _problem(obj: Any) -> str | None:
    """Why ``obj`` must not be reachable from a script, or None if it is harmless."""
    root = (getattr(type(obj), "__module__", None) or "").split(".")[0]
    if isinstance(obj, types.ModuleType):
        return "a module"
    if isinstance(obj, io.IOBase):
        return "a file"
    if root in FORBIDDEN_ROOTS:
        return f"an object of {type(obj).__module__}"
    if isinstance(obj, type):
        return "a class"
    if isinstance(obj, (types.FrameType, types.CodeType, types.TracebackType, types.GeneratorType)):
        return "interpreter internals"
    if isinstance(obj, types.FunctionType):
        return None if obj.__module__ == "jobs._api" else "a host function"
    if isinstance(obj, types.MethodType):
        ok = obj.__func__.__module__ == "jobs._api" and isinstance(obj.__self__, FACADE_TYPES)
        return None if ok else "a host method"
    if isinstance(obj, types.BuiltinFunctionType):
        owner = obj.__self__
        ok = isinstance(owner, PLAIN_TYPES) or owner in PLAIN_TYPES
        return None if ok else f"a builtin bound to {owner!r}"
    if isinstance(obj, FACADE_TYPES + PLAIN_TYPES):
        return None
    return f"an unexpected {type(obj).__name__}"


def test_capability_walk() -> None:
    ns = make_namespace(lambda q, _eps, _delta=None, _rho=None: fake_release(to_wire(q)), "ds")
    col, count, sum_, mean, release = ns["col"], ns["count"], ns["sum"], ns["mean"], ns["release"]
    d = ns["dataset"]()
    grouped = d.filter(col("a") > 1).group_by("g")
    record_plan = d.agg(count(), mean("x", bounds=(0, 1)).alias("m"))
    table_plan = grouped.agg(count(), sum_("y"))
    seeds: dict[str, Any] = {
        **ns,
        "dataset()": d,
        "col('x')": col("x"),
        "expression": (col("x") + 1).is_in([1, 2]) & ~col("y").is_null(),
        "grouped": grouped,
        "count()": count(),
        "sum('x')": sum_("x"),
        "mean('x')": mean("x"),
        "scalar plan": d.count(),
        "record plan": record_plan,
        "table plan": table_plan,
        "released": release(d.count(), epsilon=1),
        "released record": release(record_plan, epsilon=1),
        "released table": release(table_plan, epsilon=1),
    }
    seen: set[int] = set()
    names: set[str] = set()
    problems: list[str] = []
    queue: list[tuple[Any, str, int]] = [(v, k, 0) for k, v in seeds.items()]
    keep_alive = []
    while queue:
        obj, path, depth = queue.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        keep_alive.append(obj)
        why = _problem(obj)
        if why:
            problems.append(f"{path} is {why}")
            continue
        if depth >= 4:
            continue
        if isinstance(obj, dict):
            queue.extend((v, f"{path}[{k!r}]", depth + 1) for k, v in obj.items())
        elif isinstance(obj, (list, tuple)):
            queue.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(obj))
        for name in dir(obj):
            if name.startswith("_"):
                continue
            try:
                value = safer_getattr(obj, name)
            except (AttributeError, NotImplementedError):
                continue
            names.add(name)
            queue.append((value, f"{path}.{name}", depth + 1))
    assert problems == []
    assert len(seen) > 50
    assert {"filter", "group_by", "agg", "alias", "is_in", "value", "ci95"} <= names


# --- a compromised worker ---------------------------------------------------------------
# The worker is assumed hostile once it runs the script; the host must not trust what it
# sends. These tests swap the interpreter for a fake worker that speaks the protocol
# badly on purpose.

FAKE_WORKER = """
import os, struct, sys
inp = sys.stdin.buffer
(n,) = struct.unpack(">I", inp.read(4))
inp.read(n)
payload = {payload!r}
out = sys.stdout.buffer
out.write(struct.pack(">I", len(payload)) + payload)
out.flush()
inp.read()
"""
FAKE_LIMITS = Limits(cpu_seconds=2, memory_mb=256, wall_seconds=3)


def _run_fake_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, payload: bytes, limits: Limits = LIMITS
) -> WorkerOutcome:
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER.format(payload=payload))
    launcher = tmp_path / "python"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I "{script}"\n')
    launcher.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(launcher))
    # The fake replaces the interpreter a worker is started with, not the template's fork.
    monkeypatch.setenv("ENCLAVE_NO_TEMPLATE", "1")
    return run_worker("result['x'] = 1", "ds", limits, Host())


def test_compromised_worker_unknown_op_is_a_job_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ScriptFailed, match="protocol"):
        _run_fake_worker(monkeypatch, tmp_path, b'{"op": "shell", "cmd": "id"}', FAKE_LIMITS)


def test_compromised_worker_garbage_ends_the_job_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A worker that breaks the protocol is killed at once, not waited for until the
    # wall clock, and the job says why.
    start = time.monotonic()
    with pytest.raises(ScriptFailed) as info:
        _run_fake_worker(monkeypatch, tmp_path, b"\xff not json", FAKE_LIMITS)
    assert not isinstance(info.value, WallClockLimit)
    assert time.monotonic() - start < FAKE_LIMITS.wall_seconds


def test_compromised_worker_cannot_return_nan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # recv is as strict as send: NaN/Infinity are not JSON.
    payload = b'{"op": "done", "result": {"x": NaN}, "printed": ""}'
    with pytest.raises(JobError):
        _run_fake_worker(monkeypatch, tmp_path, payload)


def test_compromised_worker_deep_json_is_a_job_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A deeply nested message must not escape as a RecursionError from the host.
    payload = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(JobError):
        _run_fake_worker(monkeypatch, tmp_path, payload)


def test_compromised_worker_cannot_exceed_max_printed_bytes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # max_printed_bytes is enforced by the host too, not only by the untrusted worker.
    limits = Limits(cpu_seconds=2, memory_mb=256, wall_seconds=10, max_printed_bytes=100)
    payload = json.dumps({"op": "done", "result": {}, "printed": "x" * 100_000}).encode()
    try:
        outcome = _run_fake_worker(monkeypatch, tmp_path, payload, limits)
    except JobError:
        return
    assert len(outcome.printed.encode()) <= 100 + len("\n[output truncated]")


@pytest.mark.parametrize(
    "source",
    [
        "x = " + "(" * 5000 + ")" * 5000,
        "x = " + "-" * 100_000 + "1",
        "x = " + "[" * 3000 + "]" * 3000,
    ],
)
def test_pathological_sources_are_rejected_not_crashing_the_host(source: str) -> None:
    from jobs._sandbox import compile_script

    with pytest.raises(ScriptRejected):
        compile_script(source)


def test_print_inside_functions_is_captured_in_order() -> None:
    outcome, _host = run(
        """
        def show(x):
            print("in show", x)
        show(1)
        print("top")
        result["seen"] = printed
        """
    )
    assert outcome.printed == "in show 1\ntop\n"
    assert outcome.result["seen"] == "in show 1\ntop\n"


# --- the template ---------------------------------------------------------------------


def test_each_job_is_a_new_child_of_the_template_which_survives_its_own_death() -> None:
    from jobs._sandbox import _runner

    seen: list[int] = []

    def note(_request: ReleaseRequest) -> None:
        seen.extend(worker_pids())

    script = 'result["n"] = release(dataset().count(), epsilon=1)'
    for _ in range(3):
        run(script, host=Host(hook=note))
    server = _runner._fork_server()
    assert server is not None and server.alive
    assert len(seen) == 3 and len(set(seen)) == 3  # a fresh process every time
    assert server._proc.pid not in seen  # the template itself never runs a script
    spares = _runner.spare_pids()
    assert len(spares) == _runner.SPARES
    os.killpg(server._proc.pid, signal.SIGKILL)  # the template dies
    server._proc.wait()
    deadline = time.monotonic() + 5
    while server.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run('result["x"] = 1')[0].result == {"x": 1}  # a new template takes over
    assert _runner._fork_server() is not server
    assert _runner._REAPER.wait_idle()
    for pid in spares:  # the dead template's spares went with it (killed, maybe unreaped)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                assert fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            pass


def test_text_codecs_work_although_the_worker_cannot_import() -> None:
    """The template imports every codec: a worker cannot open a module file."""
    outcome, _ = run('result["n"] = len("abcé".encode("cp1252")) + len("ж".encode("koi8_r"))')
    assert outcome.result == {"n": 5}
