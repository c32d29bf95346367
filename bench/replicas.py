"""Several `enclave serve` replicas on one PostgreSQL ledger (docs/scaling.md).

Not a test: run it by hand (`python bench/replicas.py`). It starts a durable
throwaway PostgreSQL cluster (fsync on), then measures small-job throughput
with the same number of concurrent clients served by one replica, and split
over two replicas sharing the database and the data directory; after each, it
checks the ledger charged exactly what the finished jobs released (no lost or
double debit across replicas).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import enclave_serve, machine, schema_text, write_dataset
from bench.jobs_e2e import throughput
from bench.ledger_debits import _postgres_url
from enclave import Client
from enclave._app import Enclave

EPSILON = Decimal("0.001")


@contextlib.contextmanager
def replica(data_dir: Path, url: str, name: str, tmp: Path) -> Iterator[str]:
    """One `enclave serve --replica NAME` on the shared database; its address."""
    options = ["--data-dir", str(data_dir), "--database-url", url, "--replica", name]
    with enclave_serve(tmp / f"ready-{name}", *options, "--max-jobs-per-researcher", "256") as (
        _proc,
        address,
    ):
        yield address


def main() -> None:
    """Print the comparison as Markdown."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--postgres-url", help="a SQLAlchemy URL; else a throwaway cluster")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="enclave-replicas-"))
    try:
        with _postgres_url(args.postgres_url, required=True) as url:
            assert url is not None
            _run(url, tmp, args.clients, args.seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(url: str, tmp: Path, clients: int, seconds: float) -> None:
    data_dir = tmp / "data"  # shared by the replicas: the datasets' files
    app = Enclave(data_dir, url, replica="setup")
    _p, admin = app.principals.create("root", "admin", created_by="bench")
    app.close()
    rows = []
    with replica(data_dir, url, "r1", tmp) as first:
        with Client(first, admin) as c:
            provider = c.create_principal("prov", "provider")
            researcher = c.create_principal("alice", "researcher")
        with Client(first, provider) as c:
            c.register_dataset(
                "small", write_dataset(10_000, tmp / "s.parquet"), schema_text(10_000)
            )
            c.grant("small", "alice", 1_000_000)
        charged = 0
        for label, count in (("1 replica", 1), ("2 replicas", 2)):
            with contextlib.ExitStack() as more:
                addresses = [first] + [
                    more.enter_context(replica(data_dir, url, f"r{i + 2}", tmp))
                    for i in range(count - 1)
                ]
                rate, finished = throughput(addresses, researcher, clients, seconds)
                charged += finished
                with Client(first, researcher) as c:
                    spent = c.budget("small")[0].epsilon_spent
            exact = "exact" if spent == charged * EPSILON else f"MISMATCH: {spent}"
            rows.append((label, rate, exact))
    print(
        f"Machine: {machine()}. PostgreSQL with fsync on; {clients} concurrent clients, "
        f"{seconds:g} s each; small job: one count on 10,000 rows.\n"
    )
    print("| servers | small jobs/s | ledger vs finished jobs |")
    print("|---|---:|---|")
    for label, rate, exact in rows:
        print(f"| {label} | {rate:.0f} | {exact} |")


if __name__ == "__main__":
    main()
