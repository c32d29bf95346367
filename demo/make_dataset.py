"""Generate the synthetic confidential dataset of the demo.

Overnight stays in a regional tourism data hub, in the spirit of Apidae
Tourisme in Auvergne-Rhône-Alpes.

Deterministic: the same seed gives the same file, byte for byte. This is test
data, not a release path, so it uses Python's seeded PRNG.

Usage: python demo/make_dataset.py OUT.csv [--rows N] [--seed S]
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

DEPARTMENTS = [
    "ain",
    "allier",
    "ardeche",
    "cantal",
    "drome",
    "isere",
    "loire",
    "haute_loire",
    "puy_de_dome",
    "rhone",
    "savoie",
    "haute_savoie",
]
# Mountain départements draw more visitors; weights are invented.
DEPT_WEIGHTS = [5, 3, 7, 3, 6, 10, 4, 3, 6, 12, 17, 20]
ACCOMMODATION = ["hotel", "campsite", "holiday_rental", "bed_and_breakfast", "hostel"]
ACC_WEIGHTS = [35, 20, 30, 10, 5]
SEASONS = ["winter", "spring", "summer", "autumn"]
SEASON_WEIGHTS = [30, 15, 40, 15]
ORIGINS = [
    "france",
    "belgium",
    "germany",
    "netherlands",
    "switzerland",
    "united_kingdom",
    "italy",
    "spain",
    "united_states",
    "other",
]
ORIGIN_WEIGHTS = [62, 7, 5, 6, 5, 5, 3, 2, 2, 3]
NIGHTLY = {
    "hotel": 95.0,
    "campsite": 28.0,
    "holiday_rental": 60.0,
    "bed_and_breakfast": 75.0,
    "hostel": 30.0,
}
MAX_STAYS_PER_VISITOR = 3
# Free-text town names, as an accommodation provider would type them: not a
# declared category, so group keys must be released by thresholding. A few
# percent of stays are in hamlets that only one or two visitors ever name.
TOWNS = [
    "lyon",
    "annecy",
    "chamonix",
    "grenoble",
    "val_thorens",
    "clermont_ferrand",
    "chambery",
    "megeve",
    "saint_etienne",
    "valence",
    "vichy",
    "aix_les_bains",
    "morzine",
    "le_puy_en_velay",
    "aurillac",
    "bourg_en_bresse",
    "privas",
    "annemasse",
]
TOWN_WEIGHTS = [30, 18, 16, 14, 12, 10, 9, 8, 7, 6, 5, 5, 4, 3, 3, 3, 2, 2]
COLUMNS = [
    "visitor_id",
    "department",
    "accommodation",
    "season",
    "nights",
    "spend_eur",
    "age",
    "origin",
    "party_size",
    "repeat_visit",
    "town",
]


def generate(rows: int, seed: int) -> list[list[object]]:
    """Rows of stays; a visitor has 1 to 3 stays (the schema's privacy unit)."""
    rng = random.Random(seed)
    out: list[list[object]] = []
    visitor = 0
    while len(out) < rows:
        visitor += 1
        origin = rng.choices(ORIGINS, ORIGIN_WEIGHTS)[0]
        age = min(95, max(18, int(rng.gauss(46, 15))))
        stays = min(rows - len(out), rng.choices([1, 2, 3], [70, 22, 8])[0])
        for stay in range(stays):
            dept = rng.choices(DEPARTMENTS, DEPT_WEIGHTS)[0]
            acc = rng.choices(ACCOMMODATION, ACC_WEIGHTS)[0]
            season = rng.choices(SEASONS, SEASON_WEIGHTS)[0]
            nights = min(30, max(1, int(rng.expovariate(1 / 4)) + 1))
            party = min(12, max(1, int(rng.gauss(2.6, 1.4))))
            per_night = NIGHTLY[acc] * (
                1.6 if season == "winter" and dept.endswith("savoie") else 1.0
            )
            spend = round(min(5000.0, nights * per_night * party * rng.uniform(0.6, 1.5)), 2)
            out.append(
                [
                    f"v{visitor:07d}",
                    dept,
                    acc,
                    season,
                    nights,
                    spend,
                    age,
                    origin,
                    party,
                    "true" if stay > 0 else "false",
                    f"hamlet_{rng.randrange(5000)}"
                    if rng.random() < 0.03
                    else rng.choices(TOWNS, TOWN_WEIGHTS)[0],
                ]
            )
    return out


def main() -> None:
    """Write the CSV."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--seed", type=int, default=20261203)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(generate(args.rows, args.seed))
    print(f"wrote {args.rows} stays to {args.out}")


if __name__ == "__main__":
    main()
