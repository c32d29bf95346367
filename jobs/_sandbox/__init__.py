"""Where researcher code runs, and how it talks to the trusted host.

Layers, outermost first:

1. **A fresh worker process per job** (`_runner`): forked from a template
   process (`_template`) that imported the job API once and never runs
   researcher code (a new ``python -I`` where no template runs); the host
   keeps two spares forked ahead of jobs, each used once. With an empty
   environment, a private empty working directory, only its two pipe ends open,
   stdout/stderr of the script discarded. The process never opens a dataset: it
   builds plan *descriptions* and asks the host to release them (invariant 5).
2. **Resource limits** set by the worker on itself before it compiles the
   script (`_worker`): CPU seconds, address space, file size 0, few file
   descriptors, no core dumps; plus a wall-clock kill from the host.
3. **OS isolation** the worker applies to itself before compiling the script
   (`_isolation`): a new network namespace, a private mount namespace hiding
   the server's data directory and ``/proc`` (and ``nobody`` as the uid when
   the server is root), and a seccomp allow-list under which a worker can use
   the descriptors it holds and little else: no ``open``, no socket, no
   fork, no signal to another process. Each
   reports whether it is active on this host (`probe_isolation`); in strict
   mode a job whose worker lacks one fails before the script runs.
4. **RestrictedPython ≥ 9.0** (`_restrictions`): the script is compiled with
   RestrictedPython's policy (no imports, no ``_``-names, guarded attribute and
   item access) and executed with a minimal builtins table and the job API
   facades as its only globals.

Rejected alternatives:

* *Running scripts in the server process under RestrictedPython only*: a
  language filter is not a sandbox (RestrictedPython's own docs say so, and it
  has had escapes); an escape there would hold the data and the ledger.
* *``multiprocessing`` fork of the server*: the child would inherit the server's
  memory (open datasets, tokens, DB connections). A fresh interpreter inherits
  nothing.
* *Reusing workers across jobs*: state could survive between jobs (a state
  channel). Each worker is forked from the template, never from another worker.

docs/security.md says which layers are active, what each stops and what
remains (side channels included).
"""

from ._restrictions import compile_script
from ._runner import (
    Isolation,
    Limits,
    ReleaseRequest,
    WorkerOutcome,
    probe_isolation,
    run_worker,
)

__all__ = [
    "Isolation",
    "Limits",
    "ReleaseRequest",
    "WorkerOutcome",
    "compile_script",
    "probe_isolation",
    "run_worker",
]
