"""`make demo`: the whole path on a fresh machine, through the real CLI and server.

Generates the synthetic tourism dataset, starts `enclave serve` on SQLite,
bootstraps an admin on the data dir, creates a provider, a researcher and a DPO
over gRPC, registers and grants the dataset, runs the example jobs with
`enclave submit`, prints their results and the remaining budget, then stops the
server with SIGTERM (which drains it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "demo-data"
ENCLAVE = [sys.executable, "-m", "enclave"]
EXAMPLES = [
    "overview.py",
    "by_department.py",
    "foreign_visitors.py",
    "towns.py",
    "spend_by_age.py",
]


def run(args: list[str], token: str | None = None, address: str | None = None) -> str:
    env = dict(os.environ)
    if token:
        env["ENCLAVE_TOKEN"] = token
    if address:
        env["ENCLAVE_ADDRESS"] = address
    done = subprocess.run(ENCLAVE + args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"`enclave {' '.join(args)}` failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir()
    csv = DATA / "tourism_stays.csv"
    step("generating the synthetic confidential dataset")
    subprocess.run([sys.executable, str(ROOT / "demo" / "make_dataset.py"), str(csv)], check=True)

    server_dir = DATA / "server"
    step("bootstrapping the first admin directly on the data dir")
    admin = run(
        ["admin", "create-principal", "root", "--role", "admin", "--data-dir", str(server_dir)]
    )
    print("admin token created (shown once, only its hash is stored)")

    step("starting `enclave serve` on SQLite")
    ready = DATA / "address"
    log = (DATA / "server.log").open("w")  # closed in the finally below
    server = subprocess.Popen(
        [
            *ENCLAVE,
            "serve",
            "--data-dir",
            str(server_dir),
            "--listen",
            "127.0.0.1:0",
            "--insecure",
            "--ready-file",
            str(ready),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"server did not start; see {DATA / 'server.log'}")
            time.sleep(0.1)
        address = ready.read_text().strip()
        print(f"listening on {address}")

        step("admin creates a provider, a researcher and a DPO")
        provider = run(
            ["admin", "create-principal", "tourism_board", "--role", "provider"], admin, address
        )
        researcher = run(
            ["admin", "create-principal", "alice", "--role", "researcher"], admin, address
        )
        dpo = run(["admin", "create-principal", "dpo", "--role", "dpo"], admin, address)
        print("tourism_board (provider), alice (researcher), dpo (dpo)")

        step("provider registers the confidential table and grants alice epsilon = 3, delta = 1e-6")
        print(
            run(
                [
                    "dataset",
                    "register",
                    "tourism_stays",
                    "--file",
                    str(csv),
                    "--schema",
                    str(ROOT / "demo" / "tourism_stays.schema.toml"),
                ],
                provider,
                address,
            )
        )
        print(
            run(
                [
                    "dataset",
                    "grant",
                    "tourism_stays",
                    "--to",
                    "alice",
                    "--epsilon",
                    "3",
                    "--delta",
                    "1e-6",
                ],
                provider,
                address,
            )
        )

        step("alice sees the public metadata of what she was granted")
        print(run(["datasets"], researcher, address))

        for example in EXAMPLES:
            script = ROOT / "jobs" / "examples" / example
            step(f"alice submits jobs/examples/{example}")
            print(script.read_text().rstrip())
            print("--")
            print(run(["submit", str(script), "--dataset", "tourism_stays"], researcher, address))

        step("alice's remaining budget")
        print(run(["budget"], researcher, address))

        step("provider uploads next season's file as version 2 of the dataset (budgets carry over)")
        season = DATA / "tourism_stays_2027.csv"
        subprocess.run(
            [sys.executable, str(ROOT / "demo" / "make_dataset.py"), str(season), "--seed", "2027"],
            check=True,
        )
        print(
            run(
                ["dataset", "upload", "tourism_stays", "--file", str(season), "--new-version"],
                provider,
                address,
            )
        )
        print(run(["budget"], researcher, address))

        step("the DPO verifies the ledger: each release and the new version, hash-chained")
        print(run(["audit", "verify"], dpo, address))
        print(run(["audit", "ledger"], dpo, address))
    finally:
        step("stopping the server (SIGTERM drains in-flight calls)")
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
        print(f"server exited with status {server.returncode}")


if __name__ == "__main__":
    main()
