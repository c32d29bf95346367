"""The template process: forks one fresh worker per job, never runs a script itself.

Why: starting a Python interpreter and importing the job API, RestrictedPython
and the seccomp binding costs ~60 ms per job; forking a process that already
did so costs a few. The template is started once by the host
(``python -I -m jobs._sandbox._template``, empty environment, its own session)
and from then on only forks. It never compiles or runs researcher code, never
opens data, and holds nothing but imported modules, so each child starts in
the same clean state a fresh interpreter would (no state survives between
jobs: each child is forked from the template, never from another child).

Control channel: a Unix ``SOCK_SEQPACKET`` socket whose fd number is the
template's one argument (one message per packet). The host sends
``{"id": N, "workdir": PATH}`` with the child's two pipe ends attached
(``SCM_RIGHTS``: its stdin, then its stdout); the template answers
``{"id": N, "pid": PID}``, and ``{"exit": PID, "status": S}`` when that child
ends (``S`` as `os.waitstatus_to_exitcode`: negative for a signal).
"""

from __future__ import annotations

import contextlib
import encodings
import importlib
import json
import os
import pkgutil
import select
import signal
import socket
import sys

# Everything a worker needs (the seccomp binding included), imported once here.
from . import _worker

# Every text codec too: a worker cannot import one once isolated (no `open`),
# and "abc".encode("cp1252") in a script should work, not fail as unknown.
for _codec in sorted({m.name for m in pkgutil.iter_modules(encodings.__path__)}):
    with contextlib.suppress(Exception):  # a platform's own (mbcs, oem) is absent
        importlib.import_module(f"encodings.{_codec}")


def _child(control: socket.socket, fds: list[int], workdir: str) -> None:
    """In the forked child: become a worker on the two pipe ends, then exit."""
    try:
        os.setsid()  # its own process group: the host kills the group
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        os.chdir(workdir)
        os.dup2(fds[0], 0)
        os.dup2(fds[1], 1)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
        _worker.main()  # exits the process
    finally:
        os._exit(4)


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(control, {"exit": pid, "status": os.waitstatus_to_exitcode(status)})


def _send(control: socket.socket, message: dict[str, object]) -> None:
    control.send(json.dumps(message).encode())


def main() -> None:
    """Serve fork requests until the host closes the control socket."""
    control = socket.socket(fileno=int(sys.argv[1]))
    # SIGCHLD only wakes the select below (through the wakeup pipe); the loop reaps.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        ready, _, _ = select.select([control.fileno(), wake_r], [], [], 1.0)
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        _reap(control)
        if control.fileno() not in ready:
            continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(control, 65536, 2)
        except InterruptedError:
            continue
        if not data:
            break  # the host went away: so does the template
        request = json.loads(data)
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            _send(control, {"id": request.get("id"), "error": "two pipe ends expected"})
            continue
        pid = os.fork()
        if pid == 0:
            _child(control, fds, str(request["workdir"]))
        for fd in fds:
            os.close(fd)
        _send(control, {"id": request["id"], "pid": pid})
    # Children still running are killed by the host (each in its own group).
    sys.exit(0)


if __name__ == "__main__":
    main()
