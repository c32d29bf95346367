"""The canary dataset of the adversarial corpus.

The canary table holds values whose exact text is recognisable anywhere it might
leak (a job's result, printed output, error message, or the server's log): a
numeric value, an integer code and free-text notes. None of them is public
metadata (bounds, categories, candidate grids) and no payload spells them.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

CANARY_DATASET = "vault"
#: Text that must never leave the enclave (nor reach the server log).
CANARY_AMOUNT = "987654.321"
CANARY_CODE = "13371337"
CANARY_NOTE = "CNRY-"
CANARIES = (CANARY_AMOUNT, CANARY_CODE, CANARY_NOTE, "qx7vault")
CANARY_ROWS = 300

VAULT_SCHEMA = """
description = "Adversarial corpus: canary values that must never leave"
max_rows = 1000

[columns.zone]
type = "category"
categories = ["a", "b", "c"]

[columns.note]
type = "string"

[columns.amount]
type = "float"
bounds = [0, 1000000]

[columns.code]
type = "int"
bounds = [0, 99999999]

[columns.ratio]
type = "float"
bounds = [-1, 1]

[columns.flag]
type = "bool"
"""


def vault_rows(n: int = CANARY_ROWS, seed: int = 11) -> list[dict[str, object]]:
    """Rows where every canary occurs; ``ratio`` holds a 0 and a tiny non-zero value."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for i in range(n):
        rows.append(
            {
                "zone": rng.choice(["a", "a", "b", "c"]),
                # Unique per row: no note can pass a key threshold.
                "note": f"{CANARY_NOTE}{i:04d}-qx7vault-{rng.getrandbits(32):08x}",
                "amount": float(CANARY_AMOUNT) if i % 10 == 0 else round(rng.uniform(0, 9e5), 2),
                "code": int(CANARY_CODE) if i % 7 == 0 else rng.randint(0, 9_999_999),
                "ratio": round(rng.uniform(-1, 1), 3),
                "flag": rng.random() < 0.4,
            }
        )
    rows[3]["ratio"] = 0.0
    rows[5]["ratio"] = 1e-300  # a quotient by it overflows to infinity
    return rows


def write_vault(folder: Path) -> Path:
    """The canary table as CSV in ``folder``."""
    path = folder / "vault.csv"
    rows = vault_rows()
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "flag": "true" if r["flag"] else "false"})
    return path
