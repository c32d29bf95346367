"""RestrictedPython policy: how a script is compiled and which builtins it gets."""

from __future__ import annotations

import ast
import hashlib
import operator
from collections.abc import Callable
from functools import lru_cache
from types import CodeType
from typing import Any

from RestrictedPython import compile_restricted_exec, limited_builtins, safe_builtins
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr,
)
from RestrictedPython.PrintCollector import PrintCollector

from .._errors import ScriptRejected

MAX_SCRIPT_BYTES = 256 * 1024

#: Builtins beyond RestrictedPython's safe set. Each is a pure function of its
#: arguments; none reaches modules, files, frames or types. RestrictedPython warns
#: that C builtins such as these iterate without calling ``_getiter_``; here
#: ``_getiter_`` is plain ``iter`` (the worker guards no iteration), so they
#: bypass nothing. A host that wanted a guarded ``_getiter_`` would have to wrap
#: them (tests/unit/test_capabilities.py checks what the table holds).
_EXTRA_BUILTINS: dict[str, Any] = {
    "min": min,
    "max": max,
    "sorted": sorted,
    "enumerate": enumerate,
    "zip": zip,
    "any": any,
    "all": all,
    "dict": dict,
    "set": set,
    "frozenset": frozenset,
}

#: Removed from RestrictedPython's safe set: introspection we do not need.
_DROPPED = ("id", "hash", "callable", "issubclass", "setattr", "delattr", "__build_class__")

_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
}


def _inplacevar(op: str, x: Any, y: Any) -> Any:
    fn = _INPLACE.get(op)
    if fn is None:
        raise SyntaxError(f"operator {op} is not allowed")
    return fn(x, y)


def _apply(fn: Any, *args: Any, **kwargs: Any) -> Any:
    # RestrictedPython routes calls with *args/**kwargs through this hook; the
    # callables a script can reach are already limited by its globals.
    return fn(*args, **kwargs)


def _getitem(ob: Any, index: Any) -> Any:
    return ob[index]


def builtins_table() -> dict[str, Any]:
    """The ``__builtins__`` of a script."""
    table = dict(safe_builtins)
    for name in _DROPPED:
        table.pop(name, None)
    table.update(limited_builtins)
    table.update(_EXTRA_BUILTINS)
    return table


OUTPUT_KEY = "_job_output_"


def restricted_globals(api: dict[str, Any]) -> dict[str, Any]:
    """Globals for one run: builtins, RestrictedPython's guards and the job API.

    RestrictedPython creates a print collector per function scope; handing out one
    shared collector keeps what functions print too. It is stored under a ``_``
    name, which scripts cannot reference.
    """
    output = PrintCollector(safer_getattr)
    return {
        OUTPUT_KEY: output,
        "__builtins__": builtins_table(),
        "__name__": "job",
        "_getattr_": safer_getattr,
        "_getitem_": _getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": full_write_guard,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "_print_": lambda _getattr_=None: output,
        **api,
    }


def compile_script(source: str) -> CodeType:
    """Compile a job script under RestrictedPython.

    Raises:
        ScriptRejected: listing RestrictedPython's reasons (they quote the script,
            never data).
    """
    if not isinstance(source, str) or not source.strip():
        raise ScriptRejected("the job script is empty")
    if len(source.encode()) > MAX_SCRIPT_BYTES:
        raise ScriptRejected(f"the job script is larger than {MAX_SCRIPT_BYTES} bytes")
    return _compile_cached(hashlib.sha256(source.encode()).hexdigest(), source)


def _reject_imports(source: str) -> None:
    # RestrictedPython compiles `import x` and relies on a missing __import__ at run
    # time; refusing it at submission gives the researcher a clearer message sooner.
    try:
        tree = ast.parse(source)
    except (SyntaxError, RecursionError, MemoryError):
        return  # RestrictedPython reports these with line numbers
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise ScriptRejected(
                f"the script was rejected: Line {node.lineno}: imports are not available in "
                "job scripts; the job API (dataset, col, count, sum, mean, release, result) "
                "is already defined"
            )


@lru_cache(maxsize=256)
def _compile_cached(_digest: str, source: str) -> CodeType:
    try:
        _reject_imports(source)
        result = compile_restricted_exec(source, filename="<job>")
    except (RecursionError, MemoryError, ValueError) as err:
        # Pathologically nested source; compile() itself gives up.
        raise ScriptRejected(f"the script was rejected: {type(err).__name__}") from None
    if result.errors or result.code is None:
        raise ScriptRejected("the script was rejected: " + "; ".join(result.errors))
    code: CodeType = result.code
    return code
