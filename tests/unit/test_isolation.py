"""The worker's OS isolation, tested with plain Python run inside the worker wrapper.

Plain (unrestricted) code stands for a script that escaped RestrictedPython: it
tries to reach a live server on the loopback, read a file of the hidden data
directory, create a file and fork. Each attempt must fail wherever the layer
that stops it is active; on this project's CI machines every layer is (the
last test says so, so that a host that silently lost one is noticed).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobs import Limits
from jobs._errors import SandboxUnavailable
from jobs._sandbox import Isolation, probe_isolation, run_worker
from jobs._sandbox import _isolation as isolation

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux isolation layers")


@pytest.fixture
def listener() -> tuple[int, threading.Event]:
    """A live TCP server on the loopback, recording whether anyone connected."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(5)
    reached = threading.Event()

    def accept() -> None:
        try:
            conn, _ = sock.accept()
            reached.set()
            conn.close()
        except OSError:
            pass
        finally:
            sock.close()

    threading.Thread(target=accept, daemon=True).start()
    return sock.getsockname()[1], reached


def test_escaped_code_reaches_nothing_where_the_layers_are_active(
    tmp_path: Path, listener: tuple[int, threading.Event]
) -> None:
    port, reached = listener
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    secret = data_dir / "ledger.sqlite"
    secret.write_text("confidential")
    probe = probe_isolation(Isolation(hide=str(data_dir)), port=port, secret=str(secret))
    layers, could = probe["layers"], probe["checks"]
    assert set(layers) == {"network", "filesystem", "seccomp"}
    if layers["network"] == "active":
        assert could["connect"] is False and not reached.is_set()
    if layers["filesystem"] == "active":
        assert could["read data"] is False
    if layers["seccomp"] == "active":
        assert could["create file"] is False and could["fork"] is False
        assert could["signal server"] is False
    if "active" in (layers["filesystem"], layers["seccomp"]):
        assert could["read server memory"] is False
    assert secret.read_text() == "confidential"  # the host still sees its data


def test_without_the_layers_the_same_code_would_succeed(
    tmp_path: Path, listener: tuple[int, threading.Event]
) -> None:
    """The control: the probe's attempts are real ones, not attempts bound to fail."""
    port, reached = listener
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    assert reached.wait(5)
    fd = os.open(tmp_path / "x", os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)


def test_this_host_has_every_layer() -> None:
    """CI runs as root on Linux ≥ 5: all layers must be active there (docs/security.md)."""
    layers = probe_isolation(Isolation(hide="/nonexistent-but-named"))["layers"]
    layers.pop("filesystem")  # covering a missing directory fails by design
    assert all(status == "active" for status in layers.values()), layers


def test_strict_mode_refuses_to_run_a_script_without_every_layer(tmp_path: Path) -> None:
    # A directory that cannot be covered (it does not exist) makes the layer unavailable.
    isolation = Isolation(hide=str(tmp_path / "missing"), strict=True)
    with pytest.raises(SandboxUnavailable, match="filesystem"):
        run_worker('result["x"] = 1', "stays", Limits(), lambda r: None, None, isolation)
    relaxed = Isolation(hide=str(tmp_path / "missing"), strict=False)
    done = run_worker('result["x"] = 1', "stays", Limits(), lambda r: None, None, relaxed)
    assert done.result == {"x": 1}


def _in_child(layer: Callable[[], str], attempts: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Fork; in the child apply one layer, then report its status and ``attempts()``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            report = {"status": layer()}
            report.update(attempts())
            os.write(write, json.dumps(report).encode())
        except BaseException as err:
            os.write(write, json.dumps({"error": repr(err)}).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    report = dict(json.loads(data))
    assert "error" not in report, report["error"]
    return report


def _could(action: Callable[[], object]) -> bool:
    try:
        action()
    except (OSError, ValueError):  # setrlimit reports EPERM as ValueError
        return False
    return True


def _read_memory_of(pid: int) -> bool:
    """Read a writable page of ``pid`` through /proc, as an escaped worker would."""
    with open(f"/proc/{pid}/maps") as fh:
        spans = [line.split()[0] for line in fh if line.split()[1].startswith("rw")]
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        start = int(spans[0].split("-")[0], 16)
        return bool(os.pread(fd, 16, start))
    finally:
        os.close(fd)


def test_the_filesystem_layer_alone_hides_data_and_the_server_memory(tmp_path: Path) -> None:
    """On a host without seccomp, the mount namespace still keeps data and /proc out."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "rows.parquet").write_text("confidential")
    host = os.getpid()
    assert _read_memory_of(host)  # the control: the host itself can

    def attempts() -> dict[str, Any]:
        return {
            "read data": _could(lambda: (data_dir / "rows.parquet").read_text()),
            "list data": _could(lambda: os.listdir(data_dir)) and bool(os.listdir(data_dir)),
            "read server memory": _could(lambda: _read_memory_of(host)),
            "uid": os.geteuid(),
        }

    def layer() -> str:
        status = isolation.hide_directory(str(data_dir))
        return status if isolation.drop_root() is None else "root kept"

    report = _in_child(layer, attempts)
    assert report["status"] == "active", report
    assert report["read data"] is False
    assert report["list data"] is False
    assert report["read server memory"] is False
    if os.geteuid() == 0:
        assert report["uid"] == isolation.UNPRIVILEGED  # root's files are out of reach too


def test_the_seccomp_allow_list_refuses_everything_it_does_not_name(tmp_path: Path) -> None:
    readable = tmp_path / "public.txt"
    readable.write_text("anyone may read this")
    host = os.getpid()

    def attempts() -> dict[str, Any]:
        return {
            "open a file": _could(lambda: readable.read_text()),
            "stat a path": _could(lambda: os.stat(readable)),
            "make a pipe": _could(lambda: [os.close(fd) for fd in os.pipe()]),
            "make a socket": _could(lambda: socket.socket().close()),
            "signal the server": _could(lambda: os.kill(host, 0)),
            # Even setting one to its current value (no privilege needed) is refused.
            "change a limit": _could(
                lambda: resource.setrlimit(
                    resource.RLIMIT_CORE, resource.getrlimit(resource.RLIMIT_CORE)
                )
            ),
            "read a limit": _could(lambda: resource.getrlimit(resource.RLIMIT_NOFILE)),
            "fstat its own pipe": _could(lambda: os.fstat(1)),
            # F_SETOWN: a later write to the pipe would signal that process.
            "own a pipe for signals": _could(lambda: _set_owner(host)),
            "read the clock": _could(time.time),
        }

    assert all(attempts().values())  # the control: each attempt works without the filter
    report = _in_child(isolation.install_seccomp, attempts)
    assert report.pop("status") == "active"
    assert report == {
        "open a file": False,
        "stat a path": False,
        "make a pipe": False,
        "make a socket": False,
        "signal the server": False,
        "change a limit": False,
        "read a limit": True,
        "fstat its own pipe": True,
        "own a pipe for signals": False,
        "read the clock": True,
    }


def _set_owner(pid: int) -> None:
    import fcntl

    read, write = os.pipe()
    os.close(write)
    try:
        fcntl.fcntl(read, fcntl.F_SETOWN, pid)
    finally:
        os.close(read)


@pytest.mark.skipif(os.geteuid() != 0, reason="becomes an unprivileged user first")
def test_a_non_root_worker_cannot_unmount_the_covers() -> None:
    """As a non-root server's worker (user namespace): the covers hold without seccomp."""
    import ctypes
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp())  # in /tmp: reachable by the unprivileged user
    data_dir = base / "data"
    data_dir.mkdir()
    secret = data_dir / "rows.parquet"
    secret.write_text("confidential")
    for path in (base, data_dir, secret):
        path.chmod(0o755 if path.is_dir() else 0o644)

    def layer() -> str:
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        return isolation.isolate_network() + " " + isolation.hide_directory(str(data_dir))

    def attempts() -> dict[str, Any]:
        libc = ctypes.CDLL(None, use_errno=True)
        return {
            "unmount data": libc.umount2(str(data_dir).encode(), 2) == 0,
            "unmount /proc": libc.umount2(b"/proc", 2) == 0,
            "read data": _could(secret.read_text),
        }

    try:
        report = _in_child(layer, attempts)
    finally:
        shutil.rmtree(base)
    assert report.pop("status") == "active active"
    assert report == {"unmount data": False, "unmount /proc": False, "read data": False}
