"""Registration truncates each person's contribution and tells only the provider."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from enclave import Client

ENCLAVE = [sys.executable, "-m", "enclave"]
SCHEMA = """
max_rows = 1000
privacy_unit = { column = "visitor", max_rows_per_person = 2 }

[columns.visitor]
type = "string"

[columns.season]
type = "category"
categories = ["winter", "summer"]
max_groups_per_person = 1

[columns.nights]
type = "int"
bounds = [1, 14]
"""


def test_registration_reports_what_it_dropped_to_the_provider_only(server, tmp_path: Path) -> None:
    data = tmp_path / "visits.csv"
    pl.DataFrame(
        {
            # v1: 4 stays, two seasons -> keeps its first summer stays among its first 2
            "visitor": ["v1", "v1", "v1", "v1", "v2", "v3"],
            "season": ["summer", "winter", "summer", "summer", "winter", "summer"],
            "nights": [1, 2, 3, 4, 5, 6],
        }
    ).write_csv(data)
    with Client(server.address, server.provider_token) as provider:
        info = provider.register_dataset("visits", data, SCHEMA)
        assert (info.rows_dropped, info.persons_truncated) == (3, 1)
        described = provider.describe_dataset("visits")
        assert (described.rows_dropped, described.persons_truncated) == (0, 0)
        [season] = [c for c in described.columns if c.name == "season"]
        assert season.max_groups_per_person == 1
    name = "trunc_reader"
    token = server.researcher(None, name=name)
    with Client(server.address, server.provider_token) as provider:
        provider.grant("visits", name, 100)
    with Client(server.address, token) as client:
        listed = [d for d in client.datasets() if d.name == "visits"]
        assert [(d.rows_dropped, d.persons_truncated) for d in listed] == [(0, 0)]
        job = client.run('result["n"] = release(dataset().sum("nights"), epsilon=50)', "visits")
    # Stored: v1's first stay (summer, 1 night), v2 (5) and v3 (6).
    assert abs(job.result["n"]["value"] - 12) <= 2


def test_the_cli_says_how_many_rows_registration_dropped(server, tmp_path: Path) -> None:
    data = tmp_path / "more.csv"
    pl.DataFrame(
        {"visitor": ["a", "a", "a"], "season": ["winter"] * 3, "nights": [1, 1, 1]}
    ).write_csv(data)
    schema = tmp_path / "more.schema.toml"
    schema.write_text(SCHEMA)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env |= {"ENCLAVE_TOKEN": server.provider_token, "ENCLAVE_ADDRESS": server.address}
    done = subprocess.run(
        [
            *ENCLAVE,
            "dataset",
            "register",
            "more_visits",
            "--file",
            str(data),
            "--schema",
            str(schema),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "truncated: 1 row(s) of 1 person(s)" in done.stdout
    assert "max_rows_per_person" in done.stdout
