"""Registration (check + truncate + store) vs raw Polars converting the same CSV.

Not a test: `make bench` runs it (or `python bench/registration.py --rows
1000000 6000000`). For each size it writes one generated CSV (five rows per
visitor, spread through the file) and times, on that file in the same run:

* *raw*: Polars alone converting it to Parquet with no checks, two ways:
  streaming (`scan_csv(...).sink_parquet(...)`) and in memory
  (`read_csv(...).write_parquet(...)`); the faster is the yardstick;
* *registration*: `enclave._catalog._convert`, what `Catalog.register` does
  with a provider's file (read in `BATCH_BYTES` batches, every batch checked
  against the schema, each person's rows beyond the privacy unit's bound
  dropped, Parquet written), once with a row-level privacy unit and once with
  a person-level one (`max_rows_per_person = 4`, so a fifth of the rows go).

Each measured run is a fresh interpreter (`--child`), which reports its time
and its peak resident memory (VmHWM, reset once its imports are done) above
its resident memory right after those imports, so that the figures are the
work's alone. Not ``ru_maxrss``: on Linux a child's starts at its parent's
peak at the spawn (exec keeps the pre-exec image's high-water mark), and this
bench's parent has just held a whole generated CSV in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, Section
from enclave._cli import JEMALLOC_CONF

REGIONS = ["north", "south", "east", "west"]
#: Rows per visitor in the generated file; the person-level schema keeps 4.
ROWS_PER_VISITOR = 5
MAX_ROWS_PER_PERSON = 4
UNITS = {
    "row": '"row"',
    "person": f'{{ column = "visitor", max_rows_per_person = {MAX_ROWS_PER_PERSON} }}',
}
SCHEMA = """
description = "Benchmark uploads (synthetic)"
max_rows = {max_rows}
privacy_unit = {unit}

[columns.visitor]
type = "string"

[columns.region]
type = "category"
categories = [{regions}]

[columns.nights]
type = "int"
bounds = [1, 14]

[columns.spend]
type = "float"
bounds = [0.0, 500.0]

[columns.note]
type = "string"
"""
#: What a child can run: the two raw conversions and registration per privacy unit.
VARIANTS = ("sink", "read", *(f"register-{unit}" for unit in UNITS))


def schema_text(rows: int, unit: str) -> str:
    """The public schema of a ``rows``-row file, with privacy unit ``unit`` (of `UNITS`)."""
    regions = ", ".join(f'"{r}"' for r in REGIONS)
    return SCHEMA.format(max_rows=max(rows, 1), unit=UNITS[unit], regions=regions)


def write_csv(rows: int, path: Path) -> Path:
    """``rows`` rows of CSV: five per visitor, the visitor's rows spread through the file."""
    persons = max(rows // ROWS_PER_VISITOR, 1)
    i = pl.int_range(rows, eager=True)
    pl.DataFrame(
        {
            # 7919 is prime and coprime to the sizes used: a permutation of the visitors.
            "visitor": "v" + ((i * 7919) % persons).cast(pl.String).str.zfill(8),
            "region": pl.Series(REGIONS)[i % len(REGIONS)],
            "nights": 1 + i % 14,
            "spend": (i % 50_000).cast(pl.Float64) / 100.0,
            "note": "a free-text remark about stay " + i.cast(pl.String),
        }
    ).write_csv(path)
    return path


def _status_kib(field: str) -> int:
    """A field of /proc/self/status (VmRSS: resident now; VmHWM: its peak), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(variant: str, source: Path, target: Path, rows: int) -> dict[str, float]:
    """One measured run in this (fresh) interpreter: seconds, peak MB above imports."""
    import pyarrow.parquet  # noqa: F401  (imported by every variant: same baseline)

    from enclave._catalog import _convert
    from jobs import Schema

    schemas = {unit: Schema.from_toml(schema_text(rows, unit)) for unit in UNITS}
    baseline = _status_kib("VmRSS")
    # VmHWM is this image's own peak (not the parent's, as `ru_maxrss` would
    # be); writing 5 to clear_refs resets it to the resident memory now.
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    dropped = persons = 0
    if variant == "sink":
        pl.scan_csv(source).sink_parquet(target)
    elif variant == "read":
        pl.read_csv(source).write_parquet(target)
    else:
        truncation = _convert(source, "csv", schemas[variant.split("-", 1)[1]], None, target)
        dropped, persons = truncation.rows_dropped, truncation.persons_truncated
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    target.unlink()
    return {
        "seconds": seconds,
        "peak_mb": max(peak - baseline, 0) / 1024,
        "baseline_mb": baseline / 1024,
        "rows_dropped": dropped,
        "persons_truncated": persons,
    }


def _spawn(variant: str, source: Path, target: Path, rows: int) -> dict[str, float]:
    """One run of ``variant`` in a fresh interpreter, Polars' allocator tuned as the server's."""
    args = ["bench/registration.py", "--child", variant, str(source), str(target), str(rows)]
    env = {**os.environ, "_RJEM_MALLOC_CONF": JEMALLOC_CONF}
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=3600, cwd=ROOT, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-4000:]}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


def measure(rows: int, repeat: int, tmp: Path) -> dict[str, object]:
    """Every variant ``repeat`` times on one ``rows``-row CSV, rounds interleaved."""
    source = write_csv(rows, tmp / f"upload-{rows}.csv")
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(repeat):
        for variant in VARIANTS:
            runs[variant].append(_spawn(variant, source, tmp / f"{variant}.parquet", rows))
    out: dict[str, object] = {"rows": rows, "csv_mb": source.stat().st_size / 1e6}
    for variant, results in runs.items():
        out[variant] = {
            "seconds": statistics.median(r["seconds"] for r in results),
            "peak_mb": max(r["peak_mb"] for r in results),
            "baseline_mb": max(r["baseline_mb"] for r in results),
            "rows_dropped": results[0]["rows_dropped"],
            "persons_truncated": results[0]["persons_truncated"],
        }
    source.unlink()
    return out


def _f(result: dict[str, object], variant: str, key: str) -> float:
    return float(result[variant][key])  # type: ignore[index]


def table(results: Sequence[dict[str, object]]) -> str:
    """The Markdown table: one row per size and privacy unit."""
    lines = [
        "| rows | CSV MB | privacy unit | rows dropped | raw s (which) | registration s "
        "| registration / raw | peak MB: raw sink | raw read_csv | registration |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        sink, read = _f(r, "sink", "seconds"), _f(r, "read", "seconds")
        raw, which = (sink, "sink") if sink <= read else (read, "read_csv")
        for unit in UNITS:
            variant = f"register-{unit}"
            reg = _f(r, variant, "seconds")
            lines.append(
                f"| {int(r['rows']):,} | {float(r['csv_mb']):.0f} | {unit} "  # type: ignore[call-overload]
                f"| {int(_f(r, variant, 'rows_dropped')):,} | {raw:.2f} ({which}) | {reg:.2f} "
                f"| {reg / raw:.2f}x | {_f(r, 'sink', 'peak_mb'):.0f} "
                f"| {_f(r, 'read', 'peak_mb'):.0f} | {_f(r, variant, 'peak_mb'):.0f} |"
            )
    return "\n".join(lines)


def growth(results: Sequence[dict[str, object]]) -> str:
    """How each variant's peak memory grew between the smallest and the largest file."""
    if len(results) < 2:
        return "(One size only: run two sizes to see how memory grows with the file.)"
    small, large = results[0], results[-1]
    added = float(large["csv_mb"]) - float(small["csv_mb"])  # type: ignore[arg-type]

    def span(variant: str) -> str:
        a, b = _f(small, variant, "peak_mb"), _f(large, variant, "peak_mb")
        return f"{a:.0f} -> {b:.0f} MB ({(b - a) / added:+.2f} MB per MB of CSV)"

    return (
        f"Peak memory from {int(small['rows']):,} to {int(large['rows']):,} rows "  # type: ignore[call-overload]
        f"({added:.0f} MB more CSV): registration {span('register-row')} row-level, "
        f"{span('register-person')} person-level; raw `read_csv` {span('read')}; "
        f"raw `sink_parquet` {span('sink')}."
    )


def run(sizes: Sequence[int], repeat: int) -> Section:
    """Measure every variant at every size; the report section."""
    tmp = Path(tempfile.mkdtemp(prefix="enclave-bench-registration-"))
    try:
        results = [measure(rows, repeat, tmp) for rows in sizes]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    baseline = max(_f(r, v, "baseline_mb") for r in results for v in VARIANTS)
    body = (
        f"Times are medians of {repeat} runs; peak memory the highest of them. Each run is a "
        "fresh interpreter; its peak is its peak resident memory (VmHWM, reset after the "
        "imports) minus its resident memory right after importing Polars, PyArrow and "
        f"enclave (at most {baseline:.0f} MB). The CSV "
        "has 5 rows per visitor, spread through the file. *raw*: Polars converting the "
        "same CSV to Parquet with no checks, streaming (`scan_csv().sink_parquet()`) or "
        "in memory (`read_csv().write_parquet()`); the faster of the two is the "
        "yardstick, named in brackets. *registration*: `enclave._catalog._convert`, "
        "the check, truncation and Parquet write of `Catalog.register` (no database "
        "record, no upload transfer); person-level keeps 4 rows per visitor.\n\n"
        + table(results)
        + "\n\n"
        + growth(results)
    )
    command = f"python bench/registration.py --rows {' '.join(map(str, sizes))} --repeat {repeat}"
    return Section("registration", command, body)


def main() -> None:
    """Print the section's Markdown (or, with ``--child``, one run's figures as JSON)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--child",
        nargs=4,
        metavar=("VARIANT", "CSV", "PARQUET", "ROWS"),
        help=f"internal: one run in this interpreter; VARIANT of {', '.join(VARIANTS)}",
    )
    args = parser.parse_args()
    if args.child:
        variant, source, target, rows = args.child
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}")
        print(json.dumps(child(variant, Path(source), Path(target), int(rows))))
        return
    print(run(args.rows, args.repeat).body)


if __name__ == "__main__":
    main()
