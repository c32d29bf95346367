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
    A private mount namespace in which the server's data directory is covered
    by an empty read-only tmpfs: the Parquet files and the SQLite ledger are not
    there to read. Needs root (or a user namespace with mount rights).
``seccomp``
    A seccomp filter (libseccomp, through ``pyseccomp``) that makes the system
    calls a worker never needs fail with ``EPERM``: creating sockets, starting
    programs or processes, signalling or tracing other processes, opening files
    for writing, creating, renaming or deleting files, and namespace or mount
    changes. It is a deny-list: what it does not name stays allowed.

Resource limits (CPU, address space, file size 0, 16 open files, no core dumps)
are applied by the worker itself (`jobs._sandbox._worker`) and are always
active on Linux.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 0x40000

#: The layers, in the order they are applied.
LAYERS = ("network", "filesystem", "seccomp")

#: System calls the seccomp layer refuses (EPERM), by purpose.
DENIED_SYSCALLS: dict[str, tuple[str, ...]] = {
    "network": ("socket", "socketpair", "connect", "bind", "listen", "accept", "accept4"),
    "processes": ("execve", "execveat", "fork", "vfork", "clone", "clone3"),
    "other processes": (
        "kill",
        "tkill",
        "tgkill",
        "rt_sigqueueinfo",
        "rt_tgsigqueueinfo",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "pidfd_open",
        "pidfd_send_signal",
        "pidfd_getfd",
    ),
    "files": (
        "creat",
        "unlink",
        "unlinkat",
        "rename",
        "renameat",
        "renameat2",
        "mkdir",
        "mkdirat",
        "rmdir",
        "link",
        "linkat",
        "symlink",
        "symlinkat",
        "truncate",
        "chmod",
        "fchmod",
        "fchmodat",
        "chown",
        "fchown",
        "lchown",
        "fchownat",
        "mknod",
        "mknodat",
    ),
    "system": (
        "mount",
        "umount2",
        "unshare",
        "setns",
        "chroot",
        "pivot_root",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "request_key",
        "userfaultfd",
        "io_uring_setup",
        "open_by_handle_at",
        "name_to_handle_at",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "reboot",
        "swapon",
        "swapoff",
        "setuid",
        "setgid",
        "setreuid",
        "setregid",
        "setresuid",
        "setresgid",
    ),
}


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
    """Cover ``path`` with an empty read-only tmpfs in a private mount namespace."""
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
    target = str(Path(path).resolve()).encode()
    if libc.mount(b"tmpfs", target, b"tmpfs", flags, b"size=4k,mode=000") != 0:
        why = os.strerror(ctypes.get_errno())
        return f"unavailable: mounting over the data directory failed: {why}"
    return "active"


def install_seccomp() -> str:
    """Load the deny-list filter; "active" or why not. Irreversible for this process."""
    try:
        import pyseccomp as seccomp
    except Exception as err:  # no binding, or no libseccomp.so to bind to
        return f"unavailable: no seccomp binding ({type(err).__name__}: {err})"
    try:
        flt = seccomp.SyscallFilter(seccomp.ALLOW)
        for names in DENIED_SYSCALLS.values():
            for name in names:
                try:
                    flt.add_rule(seccomp.ERRNO(errno.EPERM), name)
                except (ValueError, RuntimeError, OSError):
                    continue  # a call this architecture does not have
        # Opening a file for writing or creating one: the flags argument of open
        # and openat (O_WRONLY 1, O_RDWR 2, O_CREAT 0o100).
        for call, index in (("open", 1), ("openat", 2)):
            for mask, value in ((0o3, 0o1), (0o3, 0o2), (0o100, 0o100)):
                flt.add_rule(
                    seccomp.ERRNO(errno.EPERM),
                    call,
                    seccomp.Arg(index, seccomp.MASKED_EQ, mask, value),
                )
        flt.load()
    except Exception as err:  # the kernel refused the filter
        return f"unavailable: loading the filter failed ({type(err).__name__}: {err})"
    return "active"


def apply(data_dir: str | None) -> dict[str, str]:
    """Apply every layer; each one's status ("active", or "unavailable: why")."""
    return {
        "network": isolate_network(),
        "filesystem": hide_directory(data_dir),
        "seccomp": install_seccomp(),
    }
