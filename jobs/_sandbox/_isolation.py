"""OS isolation layers a worker applies to itself before it compiles a script.

RestrictedPython is a language filter, not a sandbox; these layers assume it
can be escaped and limit what escaped code can then do. Each is applied in the
worker after its protocol pipes are set up and before the script is compiled,
and each reports whether it is active on this host:

``network``
    A new, empty network namespace (``unshare(CLONE_NEWNET)``; as non-root,
    with a user namespace): no interface but a down loopback, so no connection
    to the server, the database or anywhere else.
``filesystem``
    A private mount namespace in which the server's data directory and
    ``/proc`` are covered by empty read-only tmpfs mounts: the Parquet files,
    the SQLite ledger and the server's memory are not there to read; a worker
    of a root server then becomes ``nobody``. Needs root (or a user namespace
    with mount rights).
``seccomp``
    A seccomp allow-list (libseccomp, through ``pyseccomp``): the worker may
    read and write the descriptors it has, manage its memory, read clocks and
    exit; every other system call fails with ``EPERM`` -- opening any file,
    sockets, fork and exec, signals to other processes, tracing, mounts and
    namespaces.

Resource limits (CPU, address space, file size 0, 16 open files, no
processes, no core dumps) are applied by the worker itself
(`jobs._sandbox._worker`) and are always active on Linux.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

# Imported now, while the process may still open files: once isolated it can't.
_seccomp: ModuleType | None = None
_SECCOMP_MISSING = ""
try:
    _seccomp = importlib.import_module("pyseccomp")
except Exception as _err:  # no binding, or no libseccomp.so to bind to
    _SECCOMP_MISSING = f"{type(_err).__name__}: {_err}"

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 0x40000
AT_EMPTY_PATH = 0x1000

#: The layers, in the order they are applied.
LAYERS = ("network", "filesystem", "seccomp")

#: The only system calls a worker may make once the filter is loaded, by purpose.
#: Read off ``strace`` of workers running the whole adversarial corpus and the
#: unit tests, plus calls CPython makes on paths the corpus may not reach (signal
#: return, clocks). Anything else fails with ``EPERM``. Opening files is not
#: here at all: a worker has imported all it needs before the filter (the
#: strace shows no open by a worker running a job), so code that escapes
#: RestrictedPython cannot open ``/proc/<server>/mem``, a TLS key or ``/etc``.
ALLOWED_SYSCALLS: dict[str, tuple[str, ...]] = {
    "memory": ("brk", "mmap", "munmap", "mremap", "mprotect", "madvise"),
    "its own descriptors": (
        "fstat",
        "read",
        "readv",
        "pread64",
        "write",
        "writev",
        "close",
        "lseek",
        "dup",
        "dup2",
        "dup3",
        "poll",
        "ppoll",
        "select",
        "pselect6",
    ),
    "signals to itself": ("rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack"),
    "threads' primitives": ("futex", "set_robust_list", "rseq", "restart_syscall"),
    "time": (
        "clock_gettime",
        "clock_getres",
        "gettimeofday",
        "nanosleep",
        "clock_nanosleep",
        "times",
    ),
    "facts about itself": (
        "getpid",
        "getppid",
        "gettid",
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "getrusage",
        "getrandom",
        "uname",
        "sched_getaffinity",
        "sched_yield",
    ),
    "ending": ("exit", "exit_group"),
}

#: Calls allowed only with some arguments: (name, ((argument index, mask,
#: value), ...)), allowed when every ``argument & mask == value``.
#: ``newfstatat``/``statx``: with ``AT_EMPTY_PATH`` (glibc's ``fstat``). The
#: kernel ignores that flag when a path is given, and seccomp cannot read
#: paths, so this does not stop a ``stat`` of a path: the filesystem layer is
#: what hides the data directory and ``/proc``. ``fcntl``: reading and setting
#: descriptor flags and duplicating only -- not ``F_SETOWN``/``F_SETSIG``, with
#: which a write to the worker's pipe would signal any process of its uid.
#: ``prlimit64``: reading this process's own limits only.
_ALL = 0xFFFFFFFFFFFFFFFF
ALLOWED_WITH_ARGUMENTS: tuple[tuple[str, tuple[tuple[int, int, int], ...]], ...] = (
    ("newfstatat", ((3, AT_EMPTY_PATH, AT_EMPTY_PATH),)),
    ("statx", ((2, AT_EMPTY_PATH, AT_EMPTY_PATH),)),
    *(
        ("fcntl", ((1, _ALL, command),))
        # F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_DUPFD_CLOEXEC
        for command in (0, 1, 2, 3, 1030)
    ),
    ("prlimit64", ((0, _ALL, 0), (2, _ALL, 0))),
)

#: Who a worker becomes when the server runs as root: ``nobody``.
UNPRIVILEGED = 65534


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> int:
    """0, or the errno of a failed ``unshare``."""
    if _libc().unshare(flags) == 0:
        return 0
    return ctypes.get_errno()


def isolate_network() -> str:
    """Enter a new network namespace; "active" or why not."""
    err = _unshare(CLONE_NEWNET)
    if err == errno.EPERM:  # not root: a user namespace grants the right, where allowed
        err = _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    if err:
        return f"unavailable: unshare(CLONE_NEWNET) failed: {os.strerror(err)}"
    return "active"


def hide_directory(path: str | None) -> str:
    """Hide ``path`` and ``/proc`` in a private mount namespace.

    ``path`` (the server's data directory) and ``/proc`` are each covered with
    an empty read-only tmpfs: no Parquet file, no SQLite ledger, and no
    ``/proc/<server>/mem``, ``environ`` or ``cmdline`` (the server's memory
    holds the data; its command line may hold a database password). `apply`
    then drops root (`drop_root`), so that what root alone may read
    (``/etc/shadow``, the PostgreSQL cluster, a 0600 TLS key) is out of reach
    too. "active" or why not.
    """
    if not path:
        return "unavailable: the server did not name its data directory"
    err = _unshare(CLONE_NEWNS)
    if err:
        return f"unavailable: unshare(CLONE_NEWNS) failed: {os.strerror(err)}"
    libc = _libc()
    # Changes in this namespace must not propagate back to the host's mounts.
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return f"unavailable: making / private failed: {os.strerror(ctypes.get_errno())}"
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    for what, target in (("the data directory", path), ("/proc", "/proc")):
        where = str(Path(target).resolve()).encode()
        if libc.mount(b"tmpfs", where, b"tmpfs", flags, b"size=4k,mode=000") != 0:
            why = os.strerror(ctypes.get_errno())
            return f"unavailable: mounting over {what} failed: {why}"
    if os.geteuid() != 0:
        # In a user namespace the worker holds every capability over its own
        # mounts, and could unmount the covers: it gives them all up.
        err = _drop_capabilities()
        if err:
            return f"unavailable: dropping capabilities failed: {os.strerror(err)}"
    return "active"


def _drop_capabilities() -> int:
    """Clear this process's capability sets (``capset``); 0, or the errno."""

    class Header(ctypes.Structure):
        _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))

    class Data(ctypes.Structure):
        _fields_ = (
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        )

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    data = (Data * 2)()  # all zero
    if _libc().capset(ctypes.byref(header), data) == 0:
        return 0
    return ctypes.get_errno()


def drop_root() -> str | None:
    """Become ``nobody`` if root: None, or why it failed.

    Done whatever became of the other layers: root is exempt from the process
    limit and may read every file.
    """
    if os.geteuid() != 0:
        return None
    try:
        os.setgroups([])
        os.setresgid(UNPRIVILEGED, UNPRIVILEGED, UNPRIVILEGED)
        os.setresuid(UNPRIVILEGED, UNPRIVILEGED, UNPRIVILEGED)
    except OSError as failure:
        return f"dropping root failed: {failure.strerror}"
    return None


def install_seccomp() -> str:
    """Load the allow-list filter; "active" or why not. Irreversible for this process.

    An allow-list, not a deny-list, so that a system call nobody thought of (a
    new one, or an old one with a surprising use) is refused by default. The
    filter covers the native architecture only; libseccomp kills a process that
    makes a call through another ABI (i386 ``int 0x80`` on x86_64), so that door
    is shut too.
    """
    seccomp = _seccomp
    if seccomp is None:
        return f"unavailable: no seccomp binding ({_SECCOMP_MISSING})"
    try:
        flt = seccomp.SyscallFilter(seccomp.ERRNO(errno.EPERM))
        for names in ALLOWED_SYSCALLS.values():
            for name in names:
                _allow(flt, seccomp, name)
        for name, conditions in ALLOWED_WITH_ARGUMENTS:
            args = [seccomp.Arg(i, seccomp.MASKED_EQ, mask, value) for i, mask, value in conditions]
            _allow(flt, seccomp, name, *args)
        flt.load()
    except Exception as err:  # the kernel refused the filter
        return f"unavailable: loading the filter failed ({type(err).__name__}: {err})"
    return "active"


def _allow(flt: Any, seccomp: Any, name: str, *args: Any) -> None:
    # A call this architecture does not have (``select`` on arm64) is skipped.
    with contextlib.suppress(ValueError, RuntimeError, OSError):
        flt.add_rule(seccomp.ALLOW, name, *args)


def apply(data_dir: str | None) -> dict[str, str]:
    """Apply every layer; each one's status ("active", or "unavailable: why")."""
    network = isolate_network()
    filesystem = hide_directory(data_dir)
    failed = drop_root()
    if failed is not None and filesystem == "active":
        filesystem = f"unavailable: {failed}"
    return {"network": network, "filesystem": filesystem, "seccomp": install_seccomp()}
