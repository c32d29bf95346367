"""The privacy budget: grants, atomic debits and a tamper-evident ledger.

This package knows nothing of gRPC or jobs; it is given principals, datasets
and amounts of ε (or ρ) and δ, and guarantees that no interleaving of debits overspends.
"""

from ._amount import (
    DELTA_QUANTUM,
    MAX_DELTA,
    MAX_EPSILON,
    QUANTUM,
    charge_amount,
    from_quanta,
    parse_delta,
    parse_epsilon,
    parse_rho,
    to_quanta,
    total,
)
from ._db import add_missing_columns, create_engine
from ._errors import (
    BudgetError,
    BudgetExhausted,
    InvalidAmount,
    LedgerCorrupt,
    NoGrant,
    PolicyViolation,
    StaleVersion,
)
from ._ledger import Balance, Ledger, LedgerEntry
from ._migrate import current as schema_revision
from ._migrate import upgrade as upgrade_schema
from ._policy import Policy, PolicyVersion

__all__ = [
    "DELTA_QUANTUM",
    "MAX_DELTA",
    "MAX_EPSILON",
    "QUANTUM",
    "Balance",
    "BudgetError",
    "BudgetExhausted",
    "InvalidAmount",
    "Ledger",
    "LedgerCorrupt",
    "LedgerEntry",
    "NoGrant",
    "Policy",
    "PolicyVersion",
    "PolicyViolation",
    "StaleVersion",
    "add_missing_columns",
    "charge_amount",
    "create_engine",
    "from_quanta",
    "parse_delta",
    "parse_epsilon",
    "parse_rho",
    "schema_revision",
    "to_quanta",
    "total",
    "upgrade_schema",
]
