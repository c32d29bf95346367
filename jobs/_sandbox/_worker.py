"""The worker process: runs one script, then exits. Started by `_runner`.

Runs as ``python -I -m jobs._sandbox._worker``. Everything before `_apply_limits`
is trusted code; from the moment the script is compiled, this process is assumed
hostile, which is why it holds nothing worth stealing: no data, no database, no
tokens, an empty environment.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401  (socket's name lookup; see below)
import os
import resource
import socket  # for the probe's self-check: imports are impossible once isolated
import sys
from typing import IO, Any

from .._api import make_namespace, result_to_json
from .._errors import PlanError, ResultRejected, ScriptRejected
from .._plan import Query, to_wire
from ._isolation import apply as isolate
from ._protocol import ProtocolError, recv, send
from ._restrictions import OUTPUT_KEY, compile_script, restricted_globals


def _apply_limits(limits: dict[str, Any]) -> None:
    cpu = int(limits["cpu_seconds"])
    memory = int(limits["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    # No new process or thread (counted per uid, so 0 refuses every fork); root
    # is exempt from this one, but its workers become nobody before the script.
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def _number_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _self_check(port: int, secret: str | None, host: int | None) -> dict[str, bool]:
    """What an escaped script could still do here (True: it could).

    Plain Python, as code that escaped RestrictedPython would run: connect to
    ``port`` on the loopback, read the file ``secret``, create a file, fork,
    read the memory of process ``host`` (the server) and signal it.
    """
    checks: dict[str, bool] = {}
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass
        checks["connect"] = True
    except OSError as err:
        # Refused means the loopback is up: a server on it would have been reached.
        checks["connect"] = isinstance(err, ConnectionRefusedError)
    if secret is not None:
        try:
            with open(secret, "rb") as fh:
                fh.read(1)
            checks["read data"] = True
        except OSError:
            checks["read data"] = False
    try:
        fd = os.open("probe.tmp", os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        checks["create file"] = True
    except OSError:
        checks["create file"] = False
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        checks["fork"] = True
    except OSError:
        checks["fork"] = False
    if host is not None:
        checks["read server memory"] = _read_memory(host)
        try:
            os.kill(host, 0)
            checks["signal server"] = True
        except OSError:
            checks["signal server"] = False
    return checks


def _read_memory(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as fh:
            regions = [line.split()[:2] for line in fh]
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return False
    try:
        for span, perms in regions:
            if perms.startswith("rw"):
                start, end = (int(x, 16) for x in span.split("-"))
                try:
                    if os.pread(fd, min(end - start, 4096), start):
                        return True
                except OSError:
                    continue
        return False
    finally:
        os.close(fd)


def _run(inp: IO[bytes], out: IO[bytes]) -> None:
    start = recv(inp)
    _apply_limits(start["limits"])
    layers = isolate(start.get("hide"))
    if start.get("probe"):
        host = start.get("host")
        checks = _self_check(
            int(start.get("port") or 9), start.get("secret"), None if host is None else int(host)
        )
        send(out, {"op": "probe", "layers": layers, "checks": checks})
        return
    missing = [name for name, status in layers.items() if status != "active"]
    if start.get("strict") and missing:
        message = f"sandbox layer(s) unavailable in strict mode: {', '.join(missing)}"
        send(out, {"op": "failed", "kind": "SandboxUnavailable", "message": message})
        return
    try:
        code = compile_script(start["script"])
    except ScriptRejected as err:
        send(out, {"op": "failed", "kind": "ScriptRejected", "message": str(err)})
        return
    # Deep recursion in the script fails as a clean RecursionError, not a C stack overflow.
    sys.setrecursionlimit(500)

    def release_fn(query: Query, epsilon: Any, delta: Any, rho: Any) -> Any:
        send(
            out,
            {
                "op": "release",
                "plan": to_wire(query),
                "epsilon": "" if epsilon is None else _number_text(epsilon),
                "delta": "0" if delta is None else _number_text(delta),
                "rho": "" if rho is None else _number_text(rho),
            },
        )
        reply = recv(inp)
        if not isinstance(reply, dict) or reply.get("ok") is not True:
            # A refused release ends the job; the host records why.
            os._exit(0)
        return reply["release"]

    namespace = make_namespace(release_fn, start["dataset"])
    env = restricted_globals(namespace)
    max_printed = int(start["limits"]["max_printed_bytes"])
    try:
        exec(code, env)
        result = result_to_json(env.get("result"))
    except PlanError as err:
        send(out, {"op": "failed", "kind": "PlanError", "message": str(err)})
        return
    except ResultRejected as err:
        send(out, {"op": "failed", "kind": "ResultRejected", "message": str(err)})
        return
    except MemoryError:
        send(out, {"op": "failed", "kind": "MemoryError", "message": "memory limit exceeded"})
        return
    except RecursionError:
        send(out, {"op": "failed", "kind": "ScriptFailed", "message": "RecursionError: too deep"})
        return
    except BaseException as err:  # the script's own failure; its text is its own
        message = f"{type(err).__name__}: {err}"[:4000]
        send(out, {"op": "failed", "kind": "ScriptFailed", "message": message})
        return
    printed = env[OUTPUT_KEY]()
    if len(printed.encode()) > max_printed:
        printed = printed.encode()[:max_printed].decode(errors="ignore") + "\n[output truncated]"
    try:
        send(out, {"op": "done", "result": result, "printed": printed})
    except (ProtocolError, ValueError):  # over 16 MiB, or an int too long for JSON
        message = (
            "the result cannot be sent: it is larger than the 16 MiB message limit or holds "
            "a number with more than 4,300 digits"
        )
        send(out, {"op": "failed", "kind": "ResultRejected", "message": message})


def main() -> None:
    """Take the protocol pipes off fds 0/1 so that nothing else can write to them."""
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    try:
        _run(inp, out)
    except MemoryError:
        try:
            send(out, {"op": "failed", "kind": "MemoryError", "message": "memory limit exceeded"})
        except BaseException:
            os._exit(3)
    except Exception:  # protocol trouble: the host sees EOF and reports a crash
        os._exit(2)
    out.close()
    os._exit(0)


if __name__ == "__main__":
    main()
