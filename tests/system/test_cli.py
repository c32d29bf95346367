"""The `enclave` command as users run it: a server process, CLI processes, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from enclave import Client

ENCLAVE = [sys.executable, "-m", "enclave"]


def cli(
    *args: str, token: str | None = None, address: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    if token:
        env["ENCLAVE_TOKEN"] = token
    if address:
        env["ENCLAVE_ADDRESS"] = address
    done = subprocess.run([*ENCLAVE, *args], env=env, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"enclave {args} failed: {done.stdout}{done.stderr}")
    return done


@pytest.fixture
def served(tmp_path: Path):
    data_dir = tmp_path / "server"
    admin = cli(
        "admin", "create-principal", "root", "--role", "admin", "--data-dir", str(data_dir)
    ).stdout.strip()
    ready = tmp_path / "address"
    proc = subprocess.Popen(
        [
            *ENCLAVE,
            "serve",
            "--data-dir",
            str(data_dir),
            "--listen",
            "127.0.0.1:0",
            "--insecure",
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text()):
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield proc, ready.read_text().strip(), admin
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_full_path_through_the_cli(served, dataset_files) -> None:
    _proc, address, admin = served
    data, schema = dataset_files
    provider = cli(
        "admin", "create-principal", "prov", "--role", "provider", token=admin, address=address
    ).stdout.strip()
    researcher = cli(
        "admin", "create-principal", "alice", "--role", "researcher", token=admin, address=address
    ).stdout.strip()
    assert researcher.startswith("enc_")
    cli(
        "dataset",
        "register",
        "stays",
        "--file",
        str(data),
        "--schema",
        str(schema),
        token=provider,
        address=address,
    )
    cli(
        "dataset",
        "grant",
        "stays",
        "--to",
        "alice",
        "--epsilon",
        "2",
        token=provider,
        address=address,
    )

    script = data.parent / "job.py"
    script.write_text('result["n"] = release(dataset().count(), epsilon=0.5)\n')
    out = cli(
        "submit",
        str(script),
        "--dataset",
        "stays",
        "--json",
        "--request-id",
        "r1",
        token=researcher,
        address=address,
    ).stdout
    job = json.loads(out)
    assert job["status"] == "SUCCEEDED"
    assert set(job) >= {"job_id", "status", "result", "cost"}
    assert job["cost"] == {"epsilon": "0.5", "delta": "0"}
    assert set(job["result"]["n"]) >= {"value", "ci95"}

    # Flags override the environment.
    again = cli(
        "--token",
        researcher,
        "--address",
        address,
        "submit",
        str(script),
        "--dataset",
        "stays",
        "--json",
        "--request-id",
        "r1",
        token="enc_wrong",
        address="127.0.0.1:1",
    ).stdout
    assert json.loads(again)["job_id"] == job["job_id"]

    budget = json.loads(cli("budget", "--json", token=researcher, address=address).stdout)
    assert budget == [
        {
            "principal": "alice",
            "dataset": "stays",
            "epsilon_cap": "2",
            "epsilon_spent": "0.5",
            "epsilon_remaining": "1.5",
            "delta_cap": "0",
            "delta_spent": "0",
            "delta_remaining": "0",
        }
    ]

    human = cli(
        "submit", str(script), "--dataset", "stays", token=researcher, address=address
    ).stdout
    assert "SUCCEEDED" in human and "95% CI" in human
    assert "stays" in cli("datasets", token=researcher, address=address).stdout
    assert job["job_id"] in cli("jobs", token=researcher, address=address).stdout
    shown = cli("job", job["job_id"], token=researcher, address=address).stdout
    assert "SUCCEEDED" in shown and "release(dataset().count(), epsilon=0.5)" in shown
    dpo = cli(
        "admin", "create-principal", "dpo", "--role", "dpo", token=admin, address=address
    ).stdout.strip()
    audited = json.loads(cli("job", job["job_id"], "--json", token=dpo, address=address).stdout)
    assert audited["script"] == script.read_text()
    assert job["job_id"] in cli("jobs", token=dpo, address=address).stdout

    refused = cli("budget", token="enc_wrong", address=address, check=False)
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
    over = script.with_name("over.py")
    over.write_text('result["n"] = release(dataset().count(), epsilon=5)\n')
    failed = cli(
        "submit", str(over), "--dataset", "stays", token=researcher, address=address, check=False
    )
    assert failed.returncode == 1 and "RESOURCE_EXHAUSTED" in failed.stdout


def test_sigterm_drains_a_running_job_then_exits_cleanly(served, dataset_files) -> None:
    proc, address, admin = served
    data, schema = dataset_files
    with Client(address, admin) as c:
        provider = c.create_principal("prov", "provider")
        researcher = c.create_principal("alice", "researcher")
    with Client(address, provider) as c:
        c.register_dataset("stays", data, schema)
        c.grant("stays", "alice", 1)
    outcome: dict[str, object] = {}
    slow = "x = 0\nwhile x < 3000000:\n    x += 1\nresult['n'] = release(dataset().count(), epsilon=0.1)"

    def submit() -> None:
        with Client(address, researcher) as c:
            outcome["job"] = c.submit(slow, "stays")

    t = threading.Thread(target=submit)
    t.start()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert proc.wait(60) == 0
    assert outcome["job"].state == "SUCCEEDED"


def test_serve_refuses_plaintext_off_loopback_or_without_insecure(tmp_path: Path) -> None:
    no_flag = cli("serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0", check=False)
    assert no_flag.returncode != 0 and "--insecure" in no_flag.stderr
    public = cli(
        "serve", "--data-dir", str(tmp_path), "--listen", "0.0.0.0:0", "--insecure", check=False
    )
    assert public.returncode != 0 and "loopback" in public.stderr


def test_register_refuses_data_that_does_not_match_its_schema(
    served, tmp_path: Path, dataset_files
) -> None:
    _proc, address, admin = served
    _data, schema = dataset_files
    with Client(address, admin) as c:
        provider = c.create_principal("prov", "provider")
    bad = tmp_path / "bad.csv"
    bad.write_text("region,nights,spend,age,repeat\nnorth,3,10.5,40,true\nmars,99,1,40,maybe\n")
    done = cli(
        "dataset",
        "register",
        "bad",
        "--file",
        str(bad),
        "--schema",
        str(schema),
        token=provider,
        address=address,
        check=False,
    )
    assert done.returncode == 1
    assert "INVALID_ARGUMENT" in done.stderr
    assert "'region'" in done.stderr and "row 2" in done.stderr
    assert "'nights'" in done.stderr and "'repeat'" in done.stderr
    with Client(address, provider) as c:
        assert c.datasets() == []


def test_dataset_upload_streams_with_a_progress_bar(served, dataset_files) -> None:
    _proc, address, admin = served
    data, schema = dataset_files
    provider = cli(
        "admin", "create-principal", "up", "--role", "provider", token=admin, address=address
    ).stdout.strip()
    done = cli(
        "dataset",
        "upload",
        "uploaded",
        "--file",
        str(data),
        "--schema",
        str(schema),
        token=provider,
        address=address,
    )
    assert "registered uploaded" in done.stdout
    assert "100.0%" in done.stderr and "MiB" in done.stderr  # the bar, on stderr
    quiet = cli(
        "dataset",
        "upload",
        "again",
        "--file",
        str(data),
        "--schema",
        str(schema),
        "--quiet",
        token=provider,
        address=address,
    )
    assert "registered again" in quiet.stdout and quiet.stderr == ""


def test_upload_without_schema_proposes_one_and_confirm_registers(served, dataset_files) -> None:
    _proc, address, admin = served
    data, schema = dataset_files
    provider = cli(
        "admin", "create-principal", "drafter", "--role", "provider", token=admin, address=address
    ).stdout.strip()
    proposed = cli(
        "dataset",
        "upload",
        "later",
        "--file",
        str(data),
        "--quiet",
        token=provider,
        address=address,
    )
    assert "later is a draft, invisible to researchers" in proposed.stdout
    assert "bounds = [?, ?]" in proposed.stdout
    assert "enclave dataset confirm later --schema FILE" in proposed.stdout
    page = data.parent / "later-quality.html"
    quality = cli(
        "dataset",
        "quality",
        "later",
        "--schema",
        str(schema),
        "--html",
        str(page),
        token=provider,
        address=address,
    )
    assert "later (draft):" in quality.stdout and "rows" in quality.stdout
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "<svg" in text and "for its provider only" in text
    done = cli(
        "dataset", "confirm", "later", "--schema", str(schema), token=provider, address=address
    )
    assert "registered later (5 columns)" in done.stdout
