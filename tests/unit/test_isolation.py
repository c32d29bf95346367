"""The worker's OS isolation, tested with plain Python run inside the worker wrapper.

Plain (unrestricted) code stands for a script that escaped RestrictedPython: it
tries to reach a live server on the loopback, read a file of the hidden data
directory, create a file and fork. Each attempt must fail wherever the layer
that stops it is active; on this project's CI machines every layer is (the
last test says so, so that a host that silently lost one is noticed).
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest

from jobs import Limits
from jobs._errors import SandboxUnavailable
from jobs._sandbox import Isolation, probe_isolation, run_worker

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
    assert secret.read_text() == "confidential"  # the host still sees its data


def test_without_the_layers_the_same_code_would_succeed(
    tmp_path: Path, listener: tuple[int, threading.Event]
) -> None:
    """The control: the probe's attempts are real ones, not attempts bound to fail."""
    import os

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
