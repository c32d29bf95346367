"""Exact privacy amounts.

The ledger stores ε as an integer number of quanta (10⁻¹² ε) so that the
conditional debit ``spent + q <= cap`` is exact integer arithmetic on every SQL
backend; SQLite has no exact decimal type, and float sums drift. A requested
amount finer than one quantum is rounded *up*: the ledger may charge a hair more
than the mechanism spends, never less.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext

QUANTUM = Decimal("1e-12")
#: δ is a probability and is spent in far smaller amounts (1e-6 .. 1e-12).
DELTA_QUANTUM = Decimal("1e-18")
#: Largest amount accepted anywhere; keeps quanta inside a signed 64-bit column.
MAX_EPSILON = Decimal(1_000_000)
MAX_DELTA = Decimal("0.01")


def _parse(value: object, name: str) -> Decimal:
    from ._errors import InvalidAmount

    if isinstance(value, bool):
        raise InvalidAmount(f"{name} must be a number, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidAmount(f"{name} must be finite, got {value!r}")
        text = repr(value)
    elif isinstance(value, (int, Decimal, str)):
        text = str(value).strip()
    else:
        raise InvalidAmount(f"{name} must be a number, got {type(value).__name__}")
    if len(text) > 100:
        raise InvalidAmount(f"{name} is written with more than 100 characters")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidAmount(f"{name} must be a number, got {text!r}") from None
    if not amount.is_finite():
        raise InvalidAmount(f"{name} must be finite, got {text}")
    return amount


def parse_epsilon(value: object, name: str = "epsilon") -> Decimal:
    """Turn user input (str, int, float, Decimal) into a checked positive ε.

    Floats go through ``repr`` so that ``0.1`` means ``Decimal("0.1")``, the
    number the user wrote, not its binary approximation. ρ (zero-concentrated
    DP) is checked the same way, under its own ``name``.

    >>> parse_epsilon(0.1)
    Decimal('0.1')
    >>> parse_epsilon("2")
    Decimal('2')
    """
    from ._errors import InvalidAmount

    amount = _parse(value, name)
    if amount <= 0:
        raise InvalidAmount(f"{name} must be > 0, got {value}")
    if amount > MAX_EPSILON:
        raise InvalidAmount(f"{name} must be at most {MAX_EPSILON}, got {value}")
    if amount < QUANTUM:
        raise InvalidAmount(f"{name} must be at least {QUANTUM}, got {value}")
    return amount


def parse_rho(value: object) -> Decimal:
    """A checked positive ρ, in the same units and limits as ε.

    >>> parse_rho("0.05")
    Decimal('0.05')
    """
    return parse_epsilon(value, "rho")


def parse_delta(value: object) -> Decimal:
    """A checked δ: 0, or between `DELTA_QUANTUM` and `MAX_DELTA`.

    >>> parse_delta(1e-7), parse_delta(0)
    (Decimal('1E-7'), Decimal('0'))
    """
    from ._errors import InvalidAmount

    amount = _parse(value, "delta")
    if amount == 0:
        return Decimal(0)
    if amount < 0:
        raise InvalidAmount(f"delta must be >= 0, got {value}")
    if amount > MAX_DELTA:
        raise InvalidAmount(
            f"delta must be at most {MAX_DELTA} (it bounds the probability of a total "
            f"privacy failure), got {value}"
        )
    if amount < DELTA_QUANTUM:
        raise InvalidAmount(f"delta must be 0 or at least {DELTA_QUANTUM}, got {value}")
    return amount


def to_quanta(amount: Decimal, *, rounding: str = ROUND_CEILING, quantum: Decimal = QUANTUM) -> int:
    """Whole quanta of ``amount``: rounded up for charges, down (FLOOR) for caps.

    >>> to_quanta(Decimal("0.5"))
    500000000000
    >>> to_quanta(Decimal("1.5e-12")), to_quanta(Decimal("1.5e-12"), rounding="ROUND_FLOOR")
    (2, 1)
    """
    # Exact: the default context keeps 28 digits and would round a long amount
    # *down* before the ceiling; give the division room for every digit.
    with localcontext() as ctx:
        ctx.prec = len(amount.as_tuple().digits) + 30
        return int((amount / quantum).to_integral_value(rounding=rounding))


def charge_amount(amount: Decimal, *, quantum: Decimal = QUANTUM) -> Decimal:
    """The amount the ledger will charge for ``amount``: rounded up to a whole quantum.

    Pricing calibrates the noise to this amount, so the charge, the preview and the
    mechanism all agree to the last digit.

    >>> charge_amount(Decimal(1) / 3)
    Decimal('0.333333333334')
    """
    return from_quanta(to_quanta(amount, quantum=quantum), quantum=quantum)


def total(amounts: Iterable[Decimal], *, quantum: Decimal = QUANTUM) -> Decimal:
    """Exact sum of charged amounts, as the ledger adds them (in quanta).

    >>> total([Decimal("0.1"), Decimal("0.2")])
    Decimal('0.3')
    """
    return from_quanta(sum(to_quanta(a, quantum=quantum) for a in amounts), quantum=quantum)


def from_quanta(quanta: int, *, quantum: Decimal = QUANTUM) -> Decimal:
    """The exact decimal value of a number of quanta, without trailing zeros.

    >>> from_quanta(500000000000)
    Decimal('0.5')
    """
    value = (Decimal(quanta) * quantum).normalize()
    # normalize() writes 10 as 1E+1; keep plain notation for users.
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value
