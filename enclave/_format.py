"""Human-readable output for the CLI: results with their intervals, tables."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any


def is_released(value: Any) -> bool:
    """Whether a JSON value is a released value object."""
    if not isinstance(value, dict) or "value" not in value:
        return False
    if isinstance(value.get("suppressed"), int):
        return True
    if value.get("aggregate") == "quantile":
        return isinstance(value.get("rank_error"), (int, float))
    ci = value.get("ci95")
    return isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci)


def amount(x: Decimal) -> str:
    """An exact privacy amount in positional notation: ``0.0000009``, never ``9E-7``.

    >>> amount(Decimal("9E-7")), amount(Decimal("3")), amount(Decimal("1E+1"))
    ('0.0000009', '3', '10')
    """
    text = f"{x:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def number(x: Any) -> str:
    """Compact number: integers as is, floats with 4 significant decimals."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int) or (float(x).is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    if abs(x) >= 1000:
        return f"{x:,.1f}"
    return f"{x:.4g}"


def released(value: dict[str, Any]) -> str:
    """``12,345  (95% CI 12,300 .. 12,390)``; a quantile's accuracy is in rows of rank."""
    if value.get("suppressed"):
        return f"suppressed (count < {number(value['suppressed'])})"
    if value["ci95"] is None:
        rows = number(round(value["rank_error"]))
        return f"{number(value['value'])}  (95%: rank ±{rows} rows)"
    lo, hi = value["ci95"]
    return f"{number(value['value'])}  (95% CI {number(lo)} .. {number(hi)})"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table with aligned columns."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def result(value: Any, indent: str = "") -> str:
    """Render a job result: released values with intervals, rows as tables."""
    if is_released(value):
        return indent + released(value)
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        headers = list(dict.fromkeys(k for r in value for k in r))
        rows = [
            [released(r[h]) if is_released(r.get(h)) else str(r.get(h, "")) for h in headers]
            for r in value
        ]
        return "\n".join(indent + line for line in table(headers, rows).splitlines())
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if is_released(v) or not isinstance(v, (dict, list)):
                shown = released(v) if is_released(v) else str(v)
                lines.append(f"{indent}{k}: {shown}")
            else:
                lines.append(f"{indent}{k}:")
                lines.append(result(v, indent + "  "))
        return "\n".join(lines)
    return indent + str(value)
