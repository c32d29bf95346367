"""Capability hygiene: what a script can reach from the names it is given.

Every injected name (the job API and the builtins table) is walked through the
script's own attribute guard, every public attribute to depth 4, including the
objects the API returns when called with harmless arguments. Nothing reachable
may be a module, a function or class of any module but the job API's own, a
DataFrame, a file, a socket or a connection.
"""

from __future__ import annotations

import builtins
import io
import socket
import types
from collections.abc import Iterator
from typing import Any

import pytest

from jobs._api import make_namespace
from jobs._sandbox._restrictions import OUTPUT_KEY, builtins_table, restricted_globals

#: Modules whose functions and classes a script may hold: the facades themselves.
FACADE_MODULES = {"jobs._api", "jobs._plan"}
#: Plain values a walk may end on.
LEAVES = (int, float, complex, str, bytes, bool, type(None), range, slice)
#: Builtins a script may call: none reaches modules, files, frames or types.
ALLOWED_BUILTINS = {
    "abs", "all", "any", "bool", "chr", "complex", "dict", "divmod", "enumerate", "float",
    "frozenset", "int", "isinstance", "len", "list", "max", "min", "oct", "ord", "pow",
    "range", "repr", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip", "hex",
    "bin", "True", "False", "None", "ArithmeticError", "AssertionError", "AttributeError",
    "BaseException", "BufferError", "BytesWarning", "DeprecationWarning", "EOFError",
    "EnvironmentError", "Exception", "FloatingPointError", "FutureWarning", "GeneratorExit",
    "IOError", "ImportError", "ImportWarning", "IndentationError", "IndexError", "KeyError",
    "KeyboardInterrupt", "LookupError", "MemoryError", "NameError", "NotImplementedError",
    "OSError", "OverflowError", "PendingDeprecationWarning", "ReferenceError",
    "RuntimeError", "RuntimeWarning", "StopIteration", "SyntaxError", "SyntaxWarning",
    "SystemError", "SystemExit", "TabError", "TypeError", "UnboundLocalError",
    "UnicodeDecodeError", "UnicodeEncodeError", "UnicodeError", "UnicodeTranslateError",
    "UnicodeWarning", "UserWarning", "ValueError", "Warning", "ZeroDivisionError",
    "issubclass", "callable", "hash", "id", "reversed", "map", "filter", "iter", "next",
    "bytes", "same_type", "string", "test", "_print_", "_getattr_", "Ellipsis",
}  # fmt: skip
#: Builtins that must never be there.
FORBIDDEN_BUILTINS = {
    "__import__", "open", "eval", "exec", "compile", "type", "getattr", "setattr", "delattr",
    "globals", "locals", "vars", "dir", "input", "breakpoint", "memoryview", "object",
    "format", "help", "super", "classmethod", "staticmethod", "property", "__build_class__",
}  # fmt: skip


def _namespace() -> dict[str, Any]:
    def release_fn(*_args: Any) -> Any:  # the host's side: must not be reachable
        raise AssertionError("the walk must not call release")

    return restricted_globals(make_namespace(release_fn, "stays"))


def _unsafe(value: Any) -> str | None:
    """Why ``value`` must not be reachable, or None."""
    if isinstance(value, types.ModuleType):
        return "a module"
    if isinstance(value, (io.IOBase, socket.socket)):
        return "a file or socket"
    kind = type(value)
    if kind.__module__.split(".")[0] in ("polars", "pyarrow", "opendp", "sqlalchemy", "sqlite3"):
        return f"a {kind.__module__}.{kind.__name__}"
    if isinstance(value, types.BuiltinFunctionType):  # C functions, or C methods
        owner = getattr(value, "__self__", None)
        if isinstance(owner, types.ModuleType) and owner.__name__ != "builtins":
            return f"a function of {owner.__name__}"
        return None
    if isinstance(value, (types.FunctionType, types.MethodType, type)):
        module = getattr(value, "__module__", None)
        if module not in FACADE_MODULES and not (module == "builtins" and isinstance(value, type)):
            return f"a function or class of {module}"
        if isinstance(value, types.FunctionType) and value.__name__ == "release_fn":
            return "the host's release callable"
    return None


def _walk(getattr_: Any, name: str, value: Any, depth: int) -> Iterator[tuple[str, Any]]:
    yield name, value
    if depth == 0 or isinstance(value, LEAVES):
        return
    for attr in dir(value):
        if attr.startswith("_"):
            continue  # compiled scripts cannot even name these
        try:
            child = getattr_(value, attr)
        except Exception:  # refused by the guard, or a property that raises
            continue
        yield from _walk(getattr_, f"{name}.{attr}", child, depth - 1)


def _api_objects(ns: dict[str, Any]) -> dict[str, Any]:
    """The facade objects scripts get by calling the API with harmless arguments."""
    frame = ns["dataset"]()
    objects = {
        "dataset()": frame,
        "col('x')": ns["col"]("nights"),
        "col('x') > 1": ns["col"]("nights") > 1,
        "dataset().filter(...)": frame.filter(ns["col"]("nights") > 1),
        "dataset().group_by('r')": frame.group_by("region"),
        "dataset().count()": frame.count(),
        "count()": ns["count"](),
        "mean('x')": ns["mean"]("nights"),
        "when(...)": ns["when"](ns["col"]("nights") > 1),
        "result": ns["result"],
    }
    return objects


def test_injected_names_are_the_job_api_and_nothing_else() -> None:
    ns = _namespace()
    scripts_see = {k for k in ns if not k.startswith("_")} - {"__builtins__", "__name__"}
    assert scripts_see <= {
        "dataset", "col", "lit", "when", "count", "sum", "mean", "variance", "std",
        "quantile", "median", "histogram", "release", "result",
    }  # fmt: skip
    assert "release" in scripts_see and "dataset" in scripts_see


def test_builtins_table_has_no_way_out() -> None:
    table = builtins_table()
    assert not (set(table) & FORBIDDEN_BUILTINS)
    unexpected = set(table) - ALLOWED_BUILTINS
    assert not unexpected, f"review these builtins before allowing them: {sorted(unexpected)}"
    for name, value in table.items():
        if isinstance(value, types.BuiltinFunctionType):
            assert value is getattr(builtins, name, value), name  # the real, pure builtin


@pytest.mark.parametrize("depth", [4])
def test_nothing_reachable_through_the_guard_is_a_host_capability(depth: int) -> None:
    ns = _namespace()
    getattr_ = ns["_getattr_"]
    roots = {k: v for k, v in ns.items() if not k.startswith("_") and k != "__builtins__"}
    roots |= _api_objects(ns)
    roots |= {f"builtins.{k}": v for k, v in builtins_table().items()}
    problems = []
    seen = 0
    for root, value in roots.items():
        for path, reached in _walk(getattr_, root, value, depth):
            seen += 1
            why = _unsafe(reached)
            if why is not None and not (path.startswith("builtins.") and path.count(".") == 1):
                problems.append(f"{path}: {why}")
    assert seen > 200  # the walk did walk
    assert not problems, "\n".join(problems[:20])


def test_the_print_collector_is_out_of_reach() -> None:
    ns = _namespace()
    assert OUTPUT_KEY.startswith("_")  # scripts cannot name it
    assert ns["_print_"]() is ns[OUTPUT_KEY]


def test_the_walk_would_notice_a_leak() -> None:
    """The control: a facade that exposed a module, the host's callable or a file is caught."""
    import os

    class Leaky:
        def __init__(self) -> None:
            self.helper = types.SimpleNamespace(system=os.system, mod=os)
            self.log = io.StringIO()

    getattr_ = _namespace()["_getattr_"]
    found = [why for _p, v in _walk(getattr_, "leaky", Leaky(), 3) if (why := _unsafe(v))]
    assert "a module" in found and "a file or socket" in found
    assert f"a function of {os.system.__self__.__name__}" in found  # os.system
