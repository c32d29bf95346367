"""New versions of a dataset, end to end: a provider uploads, researchers' budgets follow.

Budgets belong to the dataset, not to a file: a new version keeps the grants,
the policy and the ledger, and every ledger entry records the version it
concerns. Whether a new version starts a new budget period is its provider's
choice at upload (docs/versions.md). A real server on port 0 and a real SQLite
database; the ledger side runs on PostgreSQL too in tests/unit/test_ledger_versions.py.
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from conftest import PEOPLE_SCHEMA, SCHEMA_TOML, make_rows

from enclave import Client
from enclave._cli import _describe, _usage_text
from enclave._errors import JobFailed
from enclave.v1 import enclave_pb2 as pb

COUNT = 'result["n"] = release(dataset().count(), epsilon={eps}).value'


def _csv(path: Path, n: int, seed: int) -> Path:
    rows = make_rows(n, seed)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "repeat": "true" if r["repeat"] else "false"})
    return path


def _count(token: str, address: str, eps: str, version: int | None = None) -> float:
    """A noisy count of "stays"; ``version``: the dataset version its release must show."""
    with Client(address, token) as c:
        job = c.run(COUNT.format(eps=eps), "stays")
    if version is not None:
        assert [r.dataset_version for r in job.releases] == [version]
    return float(job.result["n"])


def test_a_new_version_keeps_budgets_and_is_recorded_in_the_ledger(
    own_server, tmp_path: Path
) -> None:
    own = own_server()
    _dpo, dpo = own.app.principals.create("dpo1", "dpo", created_by="t")
    with Client(own.address, own.provider) as prov:
        prov.set_policy("stays", "dataset_cap_epsilon = 20\n")
    # 4,000 rows in version 1; Laplace noise of scale 1 at epsilon = 1: off by more
    # than 60 with probability e^-60.
    assert abs(_count(own.researcher, own.address, "1", version=1) - 4000) < 60
    with Client(own.address, own.provider) as prov:
        info = prov.upload_version("stays", _csv(tmp_path / "v2.csv", 6000, seed=11))
        assert info.version == 2
        assert [(v.version, v.new_budget_period, v.stored) for v in info.versions] == [
            (1, False, True),  # kept for the grace period: releases priced on it finish
            (2, False, True),
        ]
        assert info.versions[0].HasField("superseded_at")
        assert not info.versions[1].HasField("superseded_at")
    with Client(own.address, own.researcher) as alice:
        seen = alice.describe_dataset("stays")
    assert seen.version == 2 and not seen.versions  # the history is for provider and DPO
    assert Decimal(seen.budget.epsilon_remaining) == 4  # 5 granted, 1 spent on version 1
    assert abs(_count(own.researcher, own.address, "0.5", version=2) - 6000) < 120  # e^-60
    with Client(own.address, dpo) as auditor:
        entries = list(auditor.ledger(dataset="stays"))
        assert auditor.verify_ledger().entries == 3
    assert [(e.kind, e.dataset_version, e.principal) for e in entries] == [
        ("debit", 1, "alice"),
        ("version", 2, "prov"),
        ("debit", 2, "alice"),
    ]
    with Client(own.address, own.provider) as prov:
        usage = prov.dataset_usage("stays")
        described = prov.describe_dataset("stays")
    assert Decimal(usage.spent.epsilon) == Decimal("1.5")
    assert usage.version == 2 and len(usage.versions) == 2
    assert "version 2: uploaded by prov" in _usage_text(usage)
    assert "version 1: uploaded by prov" in _describe(described)


def test_a_new_budget_period_starts_spending_again_within_lifetime_caps(
    own_server, tmp_path: Path
) -> None:
    own = own_server()
    with Client(own.address, own.provider) as prov:
        prov.set_policy("stays", "dataset_cap_epsilon = 5\nlifetime_cap_epsilon = 7\n")
    _count(own.researcher, own.address, "4.5")
    with Client(own.address, own.provider) as prov:
        info = prov.upload_version(
            "stays", _csv(tmp_path / "next.csv", 3000, seed=12), new_budget_period=True
        )
    assert info.versions[-1].new_budget_period
    with Client(own.address, own.researcher) as alice:
        budget = alice.describe_dataset("stays").budget
        # The period's 5 are back; the lifetime cap leaves 7 - 4.5 of them.
        assert (Decimal(budget.epsilon_spent), Decimal(budget.epsilon_remaining)) == (
            0,
            Decimal("2.5"),
        )
        alice.run(COUNT.format(eps="2.5"), "stays")
        with pytest.raises(JobFailed, match="lifetime cap") as refused:
            alice.run(COUNT.format(eps="0.1"), "stays")
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    with Client(own.address, own.provider) as prov:
        usage = prov.dataset_usage("stays")
    assert Decimal(usage.spent.epsilon) == Decimal("2.5")  # this period's spending
    assert own.app.ledger.verify()
    kinds = [(e.kind, e.dataset_version) for e in own.app.ledger.entries(dataset="stays")]
    assert kinds == [("debit", 1), ("new_period", 2), ("debit", 2)]


def _send(address: str, token: str, file: Path, options: dict[str, object]) -> None:
    with Client(address, token) as c:
        if options.pop("new_version"):
            c.upload_version("stays", file, **options)  # type: ignore[arg-type]
        else:  # the raw header, as another client could send it
            header = pb.UploadHeader(
                name="stays",
                schema_toml=SCHEMA_TOML,
                new_budget_period=bool(options.get("new_budget_period")),
            )
            c._upload(header, file, None, 1024 * 1024)


def test_a_bad_version_changes_nothing(own_server, tmp_path: Path) -> None:
    """Refused before the data are sent (wrong caller, wrong schema, wrong flags) or
    after (data that do not fit): the dataset stays at version 1, the ledger unmoved."""
    own = own_server()
    good = _csv(tmp_path / "good.csv", 500, seed=13)
    bad = tmp_path / "bad.csv"
    header, first, *rest = good.read_text().splitlines(keepends=True)
    bad.write_text(header + "atlantis" + first[first.index(",") :] + "".join(rest))
    head = own.app.ledger.head()
    _p, stranger = own.app.principals.create("other_prov", "provider", created_by="t")
    cases = [
        (stranger, {"new_version": True}, good, grpc.StatusCode.NOT_FOUND, "you own no dataset"),
        (
            own.provider,
            {"new_version": False},
            good,
            grpc.StatusCode.ALREADY_EXISTS,
            "upload a new version",
        ),
        (
            own.provider,
            {"new_version": False, "new_budget_period": True},
            good,
            grpc.StatusCode.INVALID_ARGUMENT,
            "set new_version too",
        ),
        (
            own.provider,
            {"new_version": True, "schema": PEOPLE_SCHEMA},
            good,
            grpc.StatusCode.INVALID_ARGUMENT,
            "keeps the dataset's privacy unit",
        ),
        (own.provider, {"new_version": True}, bad, grpc.StatusCode.INVALID_ARGUMENT, "atlantis"),
    ]
    for token, options, file, code, message in cases:
        with pytest.raises(grpc.RpcError) as err:
            _send(own.address, token, file, options)
        assert err.value.code() == code, err.value.details()
        assert message in (err.value.details() or ""), err.value.details()
    with Client(own.address, own.provider) as prov:
        assert prov.describe_dataset("stays").version == 1
        assert [v.version for v in prov.describe_dataset("stays").versions] == [1]
    assert own.app.ledger.head() == head
    folder = own.app.data_dir / "datasets" / "stays"
    assert len(list(folder.iterdir())) == 1  # no half-written version left behind


def test_a_superseded_file_is_purged_after_its_grace_and_releases_go_on(
    own_server, tmp_path: Path
) -> None:
    own = own_server()
    old = own.app.catalog.get("stays").path
    with Client(own.address, own.provider) as prov:
        prov.upload_version("stays", _csv(tmp_path / "v2.csv", 2000, seed=14))
    assert old.exists()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert own.app.catalog.purge_superseded(now=later) == 1
    assert not old.exists()
    with Client(own.address, own.provider) as prov:
        v1, v2 = prov.describe_dataset("stays").versions
    assert (v1.stored, v2.stored) == (False, True)
    assert abs(_count(own.researcher, own.address, "1") - 2000) < 60  # e^-60
    with Client(own.address, own.provider) as prov:
        prov.delete_dataset("stays")
    assert [v.stored for v in own.app.catalog.versions("stays")] == [False, False]


def test_the_cli_uploads_a_version_and_says_what_happened_to_budgets(
    own_server, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    own = own_server()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env |= {"ENCLAVE_TOKEN": own.provider, "ENCLAVE_ADDRESS": own.address}
    file = _csv(tmp_path / "v2.csv", 1000, seed=15)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "enclave",
            "dataset",
            "upload",
            "stays",
            "--file",
            str(file),
            "--new-version",
            "--new-budget-period",
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "stays is now version 2; a new budget period starts" in done.stdout
    _dpo, dpo = own.app.principals.create("dpo1", "dpo", created_by="t")
    env["ENCLAVE_TOKEN"] = dpo
    shown = subprocess.run(
        [sys.executable, "-m", "enclave", "audit", "ledger"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    [line] = [ln for ln in shown.stdout.splitlines() if "stays v2" in ln]
    assert "prov" in line and "new version, new budget period" in line


def test_a_retried_version_upload_adds_no_second_version(own_server, tmp_path: Path) -> None:
    """The same file again, or an upload for a version that is no longer current, is
    refused: a retry whose first answer was lost cannot open a second budget period."""
    own = own_server()
    file = _csv(tmp_path / "v2.csv", 800, seed=16)
    with Client(own.address, own.provider) as prov:
        prov.upload_version("stays", file, new_budget_period=True, replaces=1)
        head = own.app.ledger.head()
        with pytest.raises(grpc.RpcError) as again:
            prov.upload_version("stays", file, new_budget_period=True)
        assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "already version 2" in (again.value.details() or "")
        other = _csv(tmp_path / "other.csv", 900, seed=17)
        with pytest.raises(grpc.RpcError) as stale:
            prov.upload_version("stays", other, new_budget_period=True, replaces=1)
        assert stale.value.code() == grpc.StatusCode.ABORTED
        assert "at version 2, not 1" in (stale.value.details() or "")
        assert prov.describe_dataset("stays").version == 2
    assert own.app.ledger.head() == head


def test_a_name_registered_again_continues_its_versions_in_the_ledger(
    own_server, tmp_path: Path
) -> None:
    own = own_server()
    _count(own.researcher, own.address, "1", version=1)
    with Client(own.address, own.provider) as prov:
        prov.delete_dataset("stays")
        info = prov.register_dataset(
            "stays", _csv(tmp_path / "again.csv", 500, seed=18), SCHEMA_TOML
        )
    assert info.version == 2
    kinds = [(e.kind, e.dataset_version) for e in own.app.ledger.entries(dataset="stays")]
    assert kinds == [("debit", 1), ("version", 2)]  # the grant carried over: it is on record
    _count(own.researcher, own.address, "1", version=2)
