"""A multi-hundred-MB upload is received and registered in bounded server memory.

A real `enclave serve` subprocess (as a hub runs it) receives generated CSV
files over `UploadDataset`, checks them against a schema whose privacy unit
is a person (so the person-wise truncation runs too) and stores them: first
a 60 MB file, then one six times larger (375 MB). Memory bounded by a batch
means the second upload barely moves the server's peak resident memory (the
kernel's VmHWM, which the first upload has already raised by the libraries it
loads and the batch-sized working set): the test allows a third of the
larger file's size. The larger file is then sent again without a schema (a
draft, whose schema is proposed from the whole file) and its quality report
asked for: both read it a batch at a time too. Reading the file into memory, as registration did before,
takes several times its size (Polars' strings, the typed copy, the Parquet
buffers).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enclave import Client

ROOT = Path(__file__).resolve().parents[2]
ENCLAVE = (sys.executable, "-m", "enclave")
ROWS = 6_000_000  # about 375 MB of CSV
SCHEMA = """
max_rows = 10_000_000
privacy_unit = { column = "visitor", max_rows_per_person = 4 }

[columns.visitor]
type = "string"

[columns.region]
type = "category"
categories = ["north", "south", "east", "west"]

[columns.nights]
type = "int"
bounds = [1, 14]

[columns.spend]
type = "float"
bounds = [0.0, 500.0]

[columns.note]
type = "string"
"""


def _write_csv(path: Path, rows: int) -> None:
    """Five rows per visitor, spread through the file (not sorted by visitor)."""
    regions = ("north", "south", "east", "west")
    persons = rows // 5
    with open(path, "w") as fh:
        fh.write("visitor,region,nights,spend,note\n")
        for start in range(0, rows, 100_000):
            fh.write(
                "".join(
                    f"v{(i * 7919) % persons:08d},{regions[i % 4]},{1 + i % 14},"
                    f"{(i % 50_000) / 100:.2f},a free-text remark about stay {i}\n"
                    for i in range(start, min(rows, start + 100_000))
                )
            )


def _status(pid: int, field: str) -> int:
    """A /proc/PID/status field in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    data_dir = tmp_path / "enclave"
    admin = subprocess.run(
        [
            *ENCLAVE,
            "admin",
            "create-principal",
            "root",
            "--role",
            "admin",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [
            *ENCLAVE,
            "serve",
            "--insecure",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
            "--ready-file",
            str(ready),
            "--log-level",
            "WARNING",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        address = ready.read_text().strip()
        with Client(address, admin) as c:
            provider = c.create_principal("prov", "provider")
        yield proc, address, provider
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_a_375_mb_upload_registers_in_bounded_memory(
    tmp_path: Path, served: tuple[subprocess.Popen[bytes], str, str]
) -> None:
    proc, address, provider = served
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    _write_csv(small, ROWS // 6)
    _write_csv(big, ROWS)
    size = big.stat().st_size
    assert size > 350 * 10**6
    start = _status(proc.pid, "VmRSS")
    with Client(address, provider) as c:
        c.register_dataset("small", small, SCHEMA)
        warm = _status(proc.pid, "VmHWM")
        info = c.register_dataset("big", big, SCHEMA)
        registered = _status(proc.pid, "VmHWM")
        # Sent without a schema: a draft, its schema proposed from the whole file;
        # then its quality report against the schema. Both read it a batch at a time.
        draft = c.register_dataset("drafted", big, None)
        report = c.quality_report("drafted", SCHEMA)
    peak = _status(proc.pid, "VmHWM")
    print(
        f"server RSS {start / 1e6:.0f} MB; peak after a {small.stat().st_size / 1e6:.0f} MB "
        f"upload {warm / 1e6:.0f} MB, after a {size / 1e6:.0f} MB upload {registered / 1e6:.0f} "
        f"MB, after its draft and quality report {peak / 1e6:.0f} MB"
    )
    # 1,200,000 visitors with five rows each, four kept.
    assert (info.rows_dropped, info.persons_truncated) == (ROWS // 5, ROWS // 5)
    assert draft.draft and 'categories = ["east", "north", "south", "west"]' in (
        draft.proposed_schema_toml
    )
    assert (report.rows, report.persons_over_limit) == (ROWS, ROWS // 5)
    assert peak - warm < size / 3, f"peak grew by {(peak - warm) / 1e6:.0f} MB"
