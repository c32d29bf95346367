"""The ``enclave`` command line.

Client commands read ``ENCLAVE_ADDRESS`` and ``ENCLAVE_TOKEN`` (``--address`` and
``--token`` override). ``enclave admin ... --data-dir DIR`` works on a server's
data directory directly, to create the first admin.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import grpc

from budget import Policy

from . import _format as fmt
from ._client import Budget, Client, Estimate, Job, LedgerRecord
from ._errors import EnclaveError, InvalidArgument

ROLES = ("researcher", "provider", "dpo", "admin")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="enclave",
        description="Privacy-preserving remote computation: only DP aggregates leave.",
    )
    p.add_argument(
        "--address", help="server HOST:PORT (default $ENCLAVE_ADDRESS or 127.0.0.1:50051)"
    )
    p.add_argument("--token", help="bearer token (default $ENCLAVE_TOKEN)")
    p.add_argument(
        "--tls", action="store_true", default=None, help="TLS, trusting the system's CAs"
    )
    p.add_argument(
        "--tls-ca", help="PEM of the CA that signed the server's certificate ($ENCLAVE_TLS_CA)"
    )
    p.add_argument("--tls-cert", help="client certificate for mutual TLS ($ENCLAVE_TLS_CERT)")
    p.add_argument("--tls-key", help="its private key ($ENCLAVE_TLS_KEY)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--data-dir", type=Path, required=True)
    s.add_argument("--listen", default="127.0.0.1:50051", help="HOST:PORT (port 0: any free port)")
    s.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext gRPC, allowed on a loopback address only",
    )
    s.add_argument("--tls-cert", dest="serve_cert", type=Path, help="server certificate (PEM)")
    s.add_argument("--tls-key", dest="serve_key", type=Path, help="its private key (PEM)")
    s.add_argument(
        "--client-ca",
        type=Path,
        help="require client certificates signed by this CA (mutual TLS), besides tokens",
    )
    s.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    s.add_argument(
        "--replica",
        help="this server's name among replicas sharing one --database-url (default: the "
        "host name); replicas on one host need distinct names (docs/scaling.md)",
    )
    s.add_argument("--ready-file", type=Path, help="write HOST:PORT here once serving")
    s.add_argument("--max-jobs", type=int, default=4, help="jobs running at once")
    s.add_argument(
        "--max-jobs-per-researcher",
        type=int,
        default=16,
        help="jobs one researcher may have queued or running; more get RESOURCE_EXHAUSTED",
    )
    s.add_argument(
        "--strict",
        action="store_true",
        help="refuse to start unless every sandbox layer is active (docs/security.md)",
    )
    s.add_argument(
        "--max-queued-jobs",
        type=int,
        default=256,
        help="jobs queued or running over all researchers; more get RESOURCE_EXHAUSTED",
    )
    s.add_argument("--job-cpu-seconds", type=int, default=60)
    s.add_argument("--job-memory-mb", type=int, default=512)
    s.add_argument("--job-wall-seconds", type=float, default=300.0)
    s.add_argument(
        "--release-time-quantum-ms",
        type=float,
        default=0.0,
        help="pad each release's evaluation to a multiple of this many ms, so that its "
        "duration tells less about the data (docs/security.md, 'Timing'); 0: off",
    )
    s.add_argument("--log-level", default="INFO")

    po = sub.add_parser("policy", help="a dataset's privacy policy").add_subparsers(
        dest="policy", required=True
    )
    ps = po.add_parser("set", help="set your dataset's policy from a TOML file (a new version)")
    ps.add_argument("name")
    ps.add_argument("--file", type=Path, required=True)
    pw = po.add_parser("show", help="the policy in force (and what all researchers spent)")
    pw.add_argument("name")
    pw.add_argument("--history", action="store_true", help="every version, newest first")

    au = sub.add_parser("audit", help="data protection officer commands").add_subparsers(
        dest="audit", required=True
    )
    av = au.add_parser("verify", help="walk the ledger's hash chain (exit 1 if it is broken)")
    av.add_argument("--head", help="a head hash recorded earlier: it must still be in the chain")
    au.add_parser("head", help="print the ledger's head hash, to record outside the enclave")
    ab = au.add_parser(
        "budgets", help="every researcher's budget per dataset: caps, spent, lifetime, refresh"
    )
    ab.add_argument("--dataset")
    ab.add_argument("--researcher")
    ab.add_argument("--json", action="store_true")
    al = au.add_parser("ledger", help="ledger entries, filtered; export as CSV or JSON")
    al.add_argument("--researcher")
    al.add_argument("--dataset")
    al.add_argument("--since", type=_utc_datetime, help="ISO time, inclusive (UTC if no zone)")
    al.add_argument("--until", type=_utc_datetime, help="ISO time, exclusive")
    al.add_argument("--format", choices=("table", "csv", "json"), default="table")
    al.add_argument("--out", type=Path, help="write to this file instead of standard output")
    aj = au.add_parser("job", help="a job's full record: script, plans, costs, mechanisms")
    aj.add_argument("job_id")
    aj.add_argument("--json", action="store_true")
    ar = au.add_parser(
        "report", help="an HTML report with charts of spending over time and the top consumers"
    )
    ar.add_argument("--out", type=Path, required=True, help="folder for index.html and ledger.csv")

    a = sub.add_parser("admin", help="principals and tokens").add_subparsers(
        dest="admin", required=True
    )
    cp = a.add_parser("create-principal", help="create a principal and print its token once")
    cp.add_argument("name")
    cp.add_argument("--role", choices=ROLES, required=True)
    cp.add_argument("--data-dir", type=Path, help="work on this server data dir directly")
    lp = a.add_parser("principals", help="list principals")
    lp.add_argument("--data-dir", type=Path)

    d = sub.add_parser("dataset", help="provider commands").add_subparsers(
        dest="dataset", required=True
    )
    for command, text in (
        ("upload", "upload a CSV, Parquet or NDJSON file with its schema (streamed, checksummed)"),
        ("register", "the same as upload"),
    ):
        r = d.add_parser(command, help=text)
        r.add_argument("name")
        r.add_argument("--file", type=Path, required=True)
        r.add_argument(
            "--schema",
            type=Path,
            help="the schema TOML; without it the server proposes one and keeps the upload "
            "as a draft until `enclave dataset confirm` (a new version keeps the current one)",
        )
        r.add_argument("--quiet", action="store_true", help="no progress bar (it goes to stderr)")
        r.add_argument(
            "--new-version",
            action="store_true",
            help="replace your registered dataset's data with this file: its grants, policy "
            "and budget history stay",
        )
        r.add_argument(
            "--new-budget-period",
            action="store_true",
            help="with --new-version: every researcher's budget (and the dataset-wide one) "
            "starts again from 0. Only if the new data hold other persons than the previous "
            "version: otherwise their privacy loss adds up over periods (docs/versions.md)",
        )
        r.add_argument(
            "--replaces",
            type=int,
            metavar="VERSION",
            help="with --new-version: the version you mean to replace (see `enclave dataset "
            "usage`); refused if the dataset has moved on since",
        )
        r.add_argument("--clamp", action="store_true", help="clamp numbers into their bounds")
        r.add_argument(
            "--other", action="store_true", help='map values outside a category list to "other"'
        )
        r.add_argument(
            "--drop-invalid", action="store_true", help="drop rows that still do not fit (counted)"
        )
    g = d.add_parser(
        "grant", help="grant a researcher access with a budget cap (epsilon, or rho for zCDP)"
    )
    g.add_argument("name")
    g.add_argument("--to", required=True, dest="principal")
    cap = g.add_mutually_exclusive_group()
    cap.add_argument(
        "--epsilon",
        help="epsilon cap, for a pure-DP dataset (default: the policy's researcher_cap_epsilon)",
    )
    cap.add_argument(
        "--rho", help="rho cap, for a zCDP dataset (default: the policy's researcher_cap_rho)"
    )
    g.add_argument(
        "--delta",
        help="delta cap, for releasing group keys that are not public "
        "(default: 0 for a new grant, unchanged for a re-grant)",
    )
    g.add_argument(
        "--expires",
        type=_utc_datetime,
        help="end of the grant, ISO 8601 (e.g. 2027-06-30 or 2027-06-30T18:00; UTC unless "
        "an offset is given); a re-grant without it lasts for good",
    )
    rv = d.add_parser("revoke", help="end a researcher's grant now")
    rv.add_argument("name")
    rv.add_argument("--from", required=True, dest="principal")
    qr = d.add_parser("quality", help="your draft's or dataset's quality report (yours only)")
    qr.add_argument("name")
    qr.add_argument("--schema", type=Path, help="check against this schema")
    qr.add_argument("--json", action="store_true")
    qr.add_argument("--html", type=Path, help="also write the report as an HTML page here")
    dl = d.add_parser(
        "delete", help="unregister your dataset (or draft) and purge its files; the ledger stays"
    )
    dl.add_argument("name")
    cf = d.add_parser("confirm", help="register a draft under the schema you completed")
    cf.add_argument("name")
    cf.add_argument("--schema", type=Path, required=True)
    cf.add_argument("--clamp", action="store_true", help="clamp numbers into their bounds")
    cf.add_argument(
        "--other", action="store_true", help='map values outside a category list to "other"'
    )
    cf.add_argument(
        "--drop-invalid", action="store_true", help="drop rows that still do not fit (counted)"
    )
    us = d.add_parser(
        "usage", help="your dataset's use: spent vs caps, jobs, grants and their expiry"
    )
    us.add_argument("name")
    us.add_argument("--json", action="store_true")
    ds = d.add_parser("describe", help="public metadata of a dataset")
    ds.add_argument("name")
    ds.add_argument("--json", action="store_true")

    ls = sub.add_parser("datasets", help="datasets you can use")
    ls.add_argument("--json", action="store_true")

    sb = sub.add_parser("submit", help="run a job script")
    sb.add_argument("script", type=Path)
    sb.add_argument("--dataset", required=True)
    sb.add_argument("--request-id", help="idempotency key (default: a fresh one)")
    sb.add_argument("--json", action="store_true")
    sb.add_argument("--no-wait", action="store_true", help="return once queued")
    sb.add_argument(
        "--dry-run",
        action="store_true",
        help="only price the script's releases: no data read, nothing spent",
    )

    js = sub.add_parser("jobs", help="your jobs")
    js.add_argument("--json", action="store_true")
    j = sub.add_parser("job", help="one job")
    j.add_argument("job_id")
    j.add_argument("--json", action="store_true")
    c = sub.add_parser("cancel", help="cancel a job")
    c.add_argument("job_id")

    b = sub.add_parser("budget", help="your remaining privacy budget")
    b.add_argument("--dataset")
    b.add_argument("--json", action="store_true")
    return p


def _client(args: argparse.Namespace) -> Client:
    return Client(
        args.address,
        args.token,
        tls=args.tls,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


def _print_job(job: Job, as_json: bool) -> None:
    if as_json:
        print(json.dumps(job.to_json(), indent=2))
        return
    versions = sorted({r.dataset_version for r in job.releases if r.dataset_version})
    shown = job.dataset + (" v" + ",".join(map(str, versions)) if versions else "")
    print(f"job {job.job_id}  {job.state}  dataset={shown}  cost: {job.cost}")
    if job.error_code:
        print(f"error: {job.error_code}: {job.error_message}")
        if job.releases:
            print(f"{len(job.releases)} release(s) made before the error (charged):")
            for r in job.releases:
                print(f"  #{r.index} {r.cost}")
                if r.value is not None:
                    print(fmt.result(r.value, "    "))
    if job.script:
        print("script:")
        print("\n".join("  " + line for line in job.script.rstrip("\n").splitlines()))
    if job.printed:
        print("printed:")
        print("\n".join("  " + line for line in job.printed.rstrip("\n").splitlines()))
    if job.result is not None:
        print("result:")
        print(fmt.result(job.result, "  "))


def _print_estimate(estimate: Estimate, as_json: bool) -> None:
    if as_json:
        print(json.dumps(estimate.to_json(), indent=2))
        return
    print(f"dry run: {len(estimate.releases)} release(s), total {estimate.cost}")
    print(
        fmt.table(
            ["release", "dataset", "cost", "mechanism"],
            [[f"#{r.index}", r.dataset, str(r.cost), r.mechanism] for r in estimate.releases],
        )
    )
    for b in estimate.budgets:
        print(f"remaining on {b.dataset}: {_remaining(b)}")
    print("fits your budget" if estimate.fits_budget else "does NOT fit your remaining budget")


def _remaining(b: Budget) -> str:
    if b.privacy_definition == "zcdp":
        return (
            f"rho={fmt.amount(b.rho_remaining)}, delta={fmt.amount(b.delta_remaining)} (as "
            f"(epsilon={float(b.epsilon_equivalent_remaining):.4g}, "
            f"delta={fmt.amount(b.delta_equivalent_remaining)}))"
        )
    return f"epsilon={fmt.amount(b.epsilon_remaining)}, delta={fmt.amount(b.delta_remaining)}"


def _definition(info: Any) -> str:
    if info.privacy_definition == "zcdp":
        return (
            f"rho-zCDP (Gaussian noise; budgets in rho, also shown as (epsilon, delta) at "
            f"delta={info.equivalent_delta:g})"
        )
    return "pure epsilon-DP (Laplace noise); delta only for releasing private group keys"


_PROBLEMS = (
    ("nulls", "nulls"),
    ("nan", "NaN"),
    ("not_of_type", "not of type"),
    ("out_of_bounds", "out of bounds"),
    ("unknown_categories", "unknown categories"),
)


def _quality_html(report: Any) -> str:
    """A self-contained page: one row per column, a small bar per kind of problem."""
    import html

    rows = max(report.rows, 1)
    body = []
    for c in report.columns:
        cells = []
        for field_name, _label in _PROBLEMS:
            count = getattr(c, field_name)
            width = 0 if count == 0 else max(2, round(100 * count / rows))
            bar = (
                f'<svg width="104" height="12"><rect width="100" height="10" fill="#eee"/>'
                f'<rect width="{width}" height="10" fill="#c0392b"/></svg>'
            )
            cells.append(f"<td>{bar} {count:,}</td>")
        examples = "<br>".join(html.escape(e) for e in c.examples)
        body.append(
            f"<tr><th>{html.escape(c.name)}</th><td>{html.escape(c.type)}</td>"
            + "".join(cells)
            + f"<td><small>{examples}</small></td></tr>"
        )
    notes = []
    if report.missing_columns:
        notes.append("missing columns: " + ", ".join(report.missing_columns))
    if report.undeclared_columns:
        notes.append("columns not in the schema: " + ", ".join(report.undeclared_columns))
    if report.persons_over_limit:
        notes.append(
            f"{report.persons_over_limit:,} person(s) over the privacy unit's row limit "
            f"({report.rows_over_limit:,} row(s) would be dropped)"
        )
    headers = "".join(f"<th>{label}</th>" for _f, label in _PROBLEMS)
    kind = "draft" if report.draft else "dataset"
    return (
        "<!doctype html><meta charset='utf-8'>"
        f"<title>Quality of {html.escape(report.name)}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 8px;text-align:left}</style>"
        f"<h1>{html.escape(report.name)} ({kind}): {report.rows:,} rows</h1>"
        "<p><em>Computed from the data: for its provider only, not to be shared.</em></p>"
        + "".join(f"<p>{html.escape(n)}</p>" for n in notes)
        + f"<table><tr><th>column</th><th>type</th>{headers}<th>examples</th></tr>"
        + "".join(body)
        + "</table>\n"
    )


def _usage_json(usage: Any) -> str:
    from google.protobuf.json_format import MessageToJson

    return str(MessageToJson(usage, preserving_proto_field_name=True))


def _usage_text(usage: Any) -> str:
    spent = usage.spent
    lines = [
        f"{usage.dataset}: {usage.jobs:,} job(s), {usage.releases:,} release(s) charged",
        f"  spent by all researchers this budget period: epsilon {spent.epsilon or '0'}, "
        f"rho {spent.rho or '0'}, "
        f"delta {spent.delta or '0'}",
    ]
    rules = [r.strip() for r in usage.policy_toml.splitlines() if r.strip()]
    lines.append("  policy: " + ("; ".join(rules) if rules else "none (grants' caps only)"))
    lines.extend(_version_lines(usage.versions))
    rows = []
    for b in usage.grants:
        measure = "rho" if b.privacy_definition == "zcdp" else "epsilon"
        cap, used = getattr(b, f"{measure}_cap"), getattr(b, f"{measure}_spent")
        expires = (
            b.expires_at.ToDatetime(tzinfo=dt.UTC).isoformat(timespec="minutes")
            if b.HasField("expires_at")
            else "never"
        )
        rows.append([b.principal, measure, cap, used, expires])
    if rows:
        lines.append(fmt.table(["researcher", "measure", "cap", "spent", "expires"], rows))
    else:
        lines.append("  no live grants")
    return "\n".join(lines)


def _policy_lines(info: Any) -> list[str]:
    """The policy in force and the caller's budget, as short lines."""
    lines = []
    rules = [
        line.strip()
        for line in info.policy_toml.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if rules:
        lines.append("  policy: " + "; ".join(rules))
    if info.HasField("budget"):
        b = info.budget
        if b.privacy_definition == "zcdp":
            left = f"rho {b.rho_remaining} of {b.rho_cap}"
        else:
            left = f"epsilon {b.epsilon_remaining} of {b.epsilon_cap}"
        if b.delta_cap not in ("", "0"):
            left += f", delta {b.delta_remaining} of {b.delta_cap}"
        lines.append(f"  your budget: {left} remaining")
    return lines


def _version_lines(versions: Any) -> list[str]:
    """The version history (shown to the provider and DPOs), one line per version."""
    lines = []
    for v in versions:
        at = v.uploaded_at.ToDatetime(tzinfo=dt.UTC)
        state = (
            "current"
            if not v.HasField("superseded_at")
            else ("superseded" + ("" if v.stored else ", file purged"))
        )
        period = ", new budget period" if v.new_budget_period else ""
        lines.append(
            f"  version {v.version}: uploaded by {v.uploaded_by} at {at:%Y-%m-%d %H:%M} UTC"
            f"{period} ({state})"
        )
    return lines


def _describe(info: Any) -> str:
    lines = [f"{info.name}  (owner {info.owner}, version {info.version or 1})"]
    if info.description:
        lines.append(f"  {info.description}")
    unit = info.privacy_unit
    lines.append(
        "  privacy unit: "
        + (
            f"{unit.identifier} (at most {unit.max_rows_per_person} rows per person)"
            if unit.identifier
            else "one row = one person"
        )
        + f"; max_rows {info.max_rows:,}"
    )
    lines.append(f"  privacy: {_definition(info)}")
    lines.extend(_policy_lines(info))
    lines.extend(_version_lines(info.versions))
    rows = []
    for c in info.columns:
        domain = (
            f"[{fmt.number(c.lower)}, {fmt.number(c.upper)}]"
            if c.has_bounds
            else ", ".join(c.categories)
            if c.categories
            else f"at most {c.max_keys:,} distinct values"
            if c.max_keys
            else ""
        )
        if c.max_groups_per_person:
            domain += f"; at most {c.max_groups_per_person} per person"
        rows.append([c.name, c.type + (" (nullable)" if c.nullable else ""), domain.lstrip("; ")])
    lines.append(
        "\n".join(
            "  " + ln for ln in fmt.table(["column", "type", "public domain"], rows).splitlines()
        )
    )
    return "\n".join(lines)


def _info_json(info: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    out: dict[str, Any] = MessageToDict(info, preserving_proto_field_name=True)
    return out


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from jobs import Limits

        from ._server import TlsConfig, serve_forever

        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        if (args.serve_cert is None) != (args.serve_key is None):
            raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
        if args.client_ca is not None and args.serve_cert is None:
            raise InvalidArgument("--client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if not 0 <= args.release_time_quantum_ms <= 60_000:
            raise InvalidArgument("--release-time-quantum-ms must be between 0 and 60000")
        serve_forever(
            args.data_dir,
            args.listen,
            insecure=args.insecure,
            tls=(
                None
                if args.serve_cert is None
                else TlsConfig.from_files(args.serve_cert, args.serve_key, args.client_ca)
            ),
            database_url=args.database_url,
            limits=Limits(
                cpu_seconds=args.job_cpu_seconds,
                memory_mb=args.job_memory_mb,
                wall_seconds=args.job_wall_seconds,
                release_quantum_seconds=args.release_time_quantum_ms / 1000,
            ),
            max_concurrent_jobs=args.max_jobs,
            max_jobs_per_researcher=args.max_jobs_per_researcher,
            max_queued_jobs=args.max_queued_jobs,
            strict=args.strict,
            ready_file=args.ready_file,
            replica=args.replica,
        )
        return 0

    if args.command == "admin":
        if args.data_dir is not None:
            from ._app import Enclave

            app = Enclave(args.data_dir)
            try:
                if args.admin == "create-principal":
                    _p, token = app.principals.create(
                        args.name, args.role, created_by="local-admin"
                    )
                    print(token)
                else:
                    for pr in app.principals.list():
                        print(f"{pr.name}\t{pr.role.value}")
            finally:
                app.close()
            return 0
        with _client(args) as client:
            if args.admin == "create-principal":
                print(client.create_principal(args.name, args.role))
            else:
                for remote in client.principals():
                    print(f"{remote.name}\t{ROLES[remote.role - 1]}")
        return 0

    with _client(args) as client:
        if args.command == "dataset":
            if args.dataset in ("upload", "register"):
                bar = None if args.quiet else _ProgressBar(args.file.name)
                cleaning = {
                    "clamp_to_bounds": args.clamp,
                    "unknown_categories_to_other": args.other,
                    "drop_invalid_rows": args.drop_invalid,
                }
                if args.new_version:
                    info = client.upload_version(
                        args.name,
                        args.file,
                        args.schema,
                        new_budget_period=args.new_budget_period,
                        replaces=args.replaces,
                        progress=bar,
                        **cleaning,
                    )
                elif args.new_budget_period:
                    raise SystemExit("--new-budget-period goes with --new-version")
                else:
                    info = client.register_dataset(
                        args.name, args.file, args.schema, progress=bar, **cleaning
                    )
                if bar is not None:
                    bar.done()
                if info.draft:
                    print(
                        f"{info.name} is a draft, invisible to researchers. The schema below "
                        "was proposed from your file: write public bounds in place of each "
                        "bounds = [?, ?] (observed values are exact data), check the "
                        "categories and the privacy unit, then run\n"
                        f"  enclave dataset confirm {info.name} --schema FILE\n"
                    )
                    print(info.proposed_schema_toml)
                    return 0
                if args.new_version:
                    latest = info.versions[-1] if info.versions else None
                    period = (
                        "a new budget period starts: researchers' spending counts from 0 "
                        "(lifetime caps still bind)"
                        if latest is not None and latest.new_budget_period
                        else "budgets carry over"
                    )
                    print(f"{info.name} is now version {info.version}; {period}")
                else:
                    print(f"registered {info.name} ({len(info.columns)} columns)")
                if info.rows_cleaned:
                    print(f"cleaning dropped {info.rows_cleaned:,} row(s) that did not fit")
                if info.rows_dropped:
                    print(
                        f"truncated: {info.rows_dropped:,} row(s) of {info.persons_truncated:,} "
                        "person(s) went beyond the privacy unit's bounds (max_rows_per_person, "
                        "max_groups_per_person) and were not stored; each person keeps their "
                        "first rows in file order"
                    )
            elif args.dataset == "grant":
                grant = client.grant(
                    args.name,
                    args.principal,
                    args.epsilon,
                    args.delta,
                    rho=args.rho,
                    expires_at=args.expires,
                )
                zcdp = client.describe_dataset(args.name).privacy_definition == "zcdp"
                cap = f"rho cap {grant.rho_cap}" if zcdp else f"epsilon cap {grant.epsilon_cap}"
                until = (
                    f", until {grant.expires_at.ToDatetime():%Y-%m-%d %H:%M} UTC"
                    if grant.HasField("expires_at")
                    else ""
                )
                print(
                    f"granted {grant.principal} access to {grant.dataset} "
                    f"with {cap}, delta cap {grant.delta_cap}{until}"
                )
            elif args.dataset == "revoke":
                client.revoke(args.name, args.principal)
                print(f"revoked {args.principal}'s grant on {args.name}; spending stays recorded")
            elif args.dataset == "quality":
                report = client.quality_report(args.name, args.schema)
                if args.json:
                    from google.protobuf.json_format import MessageToJson

                    print(MessageToJson(report, preserving_proto_field_name=True))
                else:
                    kind = "draft" if report.draft else "dataset"
                    print(f"{report.name} ({kind}): {report.text}")
                if args.html is not None:
                    args.html.write_text(_quality_html(report))
                    print(f"wrote {args.html}")
            elif args.dataset == "delete":
                client.delete_dataset(args.name)
                print(f"deleted {args.name}: its files are purged, its ledger entries stay")
            elif args.dataset == "confirm":
                info = client.confirm_dataset(
                    args.name,
                    args.schema,
                    clamp_to_bounds=args.clamp,
                    unknown_categories_to_other=args.other,
                    drop_invalid_rows=args.drop_invalid,
                )
                print(f"registered {info.name} ({len(info.columns)} columns)")
                if info.rows_cleaned:
                    print(f"cleaning dropped {info.rows_cleaned:,} row(s) that did not fit")
            elif args.dataset == "usage":
                usage = client.dataset_usage(args.name)
                print(_usage_json(usage) if args.json else _usage_text(usage))
            else:
                info = client.describe_dataset(args.name)
                print(json.dumps(_info_json(info), indent=2) if args.json else _describe(info))
        elif args.command == "policy":
            if args.policy == "set":
                shown = client.set_policy(args.name, args.file.read_text())
            else:
                shown = client.policy(args.name, history=args.history)
            print(_policy_text(shown))
        elif args.command == "audit" and args.audit in ("budgets", "ledger", "job", "report"):
            return _audit(client, args)
        elif args.command == "audit" and args.audit == "head":
            head = client.ledger_head()
            print(f"{head.hash}  (entry {head.seq})")
        elif args.command == "audit":
            found = client.verify_ledger(args.head)
            if not found.ok:
                print(f"ledger BROKEN at entry {found.bad_entry}: {found.problem}")
                return 1
            print(f"ledger verified: {found.entries} entries, head {found.head_hash}")
        elif args.command == "datasets":
            infos = client.datasets()
            if args.json:
                print(json.dumps([_info_json(i) for i in infos], indent=2))
            else:
                print("\n\n".join(_describe(i) for i in infos) or "no datasets visible to you")
        elif args.command == "submit" and args.dry_run:
            estimate = client.estimate(args.script.read_text(), args.dataset)
            _print_estimate(estimate, args.json)
            return 0 if estimate.fits_budget else 1
        elif args.command == "submit":
            job = client.submit(
                args.script.read_text(),
                args.dataset,
                request_id=args.request_id,
                wait=not args.no_wait,
            )
            _print_job(job, args.json)
            return 0 if job.state in ("SUCCEEDED", "QUEUED", "RUNNING") else 1
        elif args.command == "jobs":
            jobs = client.list_jobs()
            if args.json:
                print(json.dumps([j.to_json() for j in jobs], indent=2))
            else:
                print(
                    fmt.table(
                        ["job", "state", "dataset", "cost", "error"],
                        [[j.job_id, j.state, j.dataset, str(j.cost), j.error_code] for j in jobs],
                    )
                )
        elif args.command == "job":
            _print_job(client.get_job(args.job_id), args.json)
        elif args.command == "cancel":
            _print_job(client.cancel_job(args.job_id), False)
        elif args.command == "budget":
            budgets = client.budget(args.dataset)
            if args.json:
                print(json.dumps([b.to_json() for b in budgets], indent=2))
            else:
                print(fmt.table(BUDGET_COLUMNS, [_budget_row(b) for b in budgets]))
    return 0


def _audit(client: Client, args: argparse.Namespace) -> int:
    """The DPO's read-only views (``enclave audit budgets|ledger|job|report``)."""
    if args.audit == "budgets":
        budgets = client.budgets(dataset=args.dataset, principal=args.researcher)
        if args.json:
            print(json.dumps([b.to_json() for b in budgets], indent=2))
        else:
            print(
                fmt.table(
                    ["researcher", *BUDGET_COLUMNS],
                    [[b.principal, *_budget_row(b)] for b in budgets],
                )
            )
    elif args.audit == "ledger":
        records = client.ledger(
            principal=args.researcher, dataset=args.dataset, since=args.since, until=args.until
        )
        out = open(args.out, "w", newline="") if args.out else sys.stdout  # noqa: SIM115
        try:
            count = _write_ledger(records, args.format, out)
        finally:
            if args.out:
                out.close()
        if args.out:
            print(f"wrote {count} ledger entries to {args.out}")
    elif args.audit == "job":
        _print_audited_job(client.get_job(args.job_id), args.json)
    else:
        from ._report import DatasetCaps, write_report

        entries = list(client.ledger())
        budgets = client.budgets()
        caps: dict[str, DatasetCaps] = {}
        for info in client.datasets():
            measure = "rho" if info.privacy_definition == "zcdp" else "epsilon"
            policy = client.policy(info.name)
            wide = None
            if policy.versions:
                body = Policy.from_toml(policy.versions[0].policy_toml)
                wide = body.dataset_cap_rho if measure == "rho" else body.dataset_cap_epsilon
            caps[info.name] = DatasetCaps(measure, wide)
        verification = client.verify_ledger()
        path = write_report(
            args.out,
            entries,
            budgets,
            caps,
            generated_by=f"enclave audit report against {client.address}",
            head=verification.head_hash or client.ledger_head().hash,
            verified=verification.ok,
        )
        print(f"wrote {path} ({len(entries)} ledger entries, {len(budgets)} budgets)")
    return 0


#: How the ledger table shows the entries that open a dataset version (no release).
_LEDGER_KINDS = {"version": "new version", "new_period": "new version, new budget period"}


def _write_ledger(records: Iterable[LedgerRecord], form: str, out: TextIO) -> int:
    from ._report import LEDGER_FIELDS

    count = 0
    if form == "csv":
        writer = csv.DictWriter(out, fieldnames=list(LEDGER_FIELDS))
        writer.writeheader()
        for r in records:
            writer.writerow(r.to_json())
            count += 1
    elif form == "json":
        rows = [r.to_json() for r in records]
        json.dump(rows, out, indent=2)
        out.write("\n")
        count = len(rows)
    else:
        rows_ = [
            [
                str(r.seq),
                f"{r.created_at:%Y-%m-%d %H:%M:%S}",
                r.principal,
                r.dataset + (f" v{r.dataset_version}" if r.dataset_version else ""),
                _LEDGER_KINDS.get(r.kind, f"{r.job_id}#{r.release_index}"),
                "-" if r.kind in _LEDGER_KINDS else str(r.cost),
                r.hash[:12],
            ]
            for r in records
        ]
        out.write(
            fmt.table(
                ["seq", "time (UTC)", "principal", "dataset", "release", "cost", "hash"], rows_
            )
            + "\n"
        )
        count = len(rows_)
    return count


def _print_audited_job(job: Job, as_json: bool) -> None:
    """Everything recorded about a job, for the DPO: never the confidential data."""
    if as_json:
        print(json.dumps(job.audit_json(), indent=2))
        return
    print(f"job {job.job_id}  {job.state}  by {job.principal}  dataset={job.dataset}")
    for label, when in (
        ("created", job.created_at),
        ("started", job.started_at),
        ("finished", job.finished_at),
    ):
        print(f"  {label:8} {'-' if when is None else f'{when:%Y-%m-%d %H:%M:%S} UTC'}")
    print(f"total cost: {job.cost}")
    if job.error_code:
        print(f"error: {job.error_code}: {job.error_message}")
    print("script:")
    print("\n".join("  " + line for line in job.script.rstrip("\n").splitlines()))
    for r in job.releases:
        version = f"  dataset version: {r.dataset_version}" if r.dataset_version else ""
        print(f"release #{r.index}: {r.cost}  mechanism: {r.mechanism}{version}")
        print("  plan: " + json.dumps(r.plan, sort_keys=True))


def _policy_text(policy: Any) -> str:
    if not policy.versions:
        return f"{policy.dataset}: no policy set (only each researcher's grant applies)"
    lines = []
    versions = list(policy.versions)
    for i, v in enumerate(versions):
        when = v.set_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"{policy.dataset} policy version {v.version}, set by {v.set_by} at {when}:")
        body = v.policy_toml.strip() or "(no limits)"
        lines += [f"  {ln}" if ln else "" for ln in body.splitlines()]
        if i + 1 < len(versions):  # newest first: the next one is what this replaced
            lines.append(
                "  changed: " + _policy_changes(versions[i + 1].policy_toml, v.policy_toml)
            )
    if policy.HasField("dataset_spent"):
        spent = policy.dataset_spent
        lines.append(
            f"spent by all researchers: epsilon={spent.epsilon}, rho={spent.rho}, "
            f"delta={spent.delta}"
        )
    return "\n".join(lines)


BUDGET_COLUMNS = [
    "dataset",
    "measure",
    "cap",
    "spent",
    "remaining",
    "delta remaining",
    "lifetime spent",
    "refreshes",
    "expires",
]


def _policy_changes(old_toml: str, new_toml: str) -> str:
    """``key: old → new`` for each limit that changed ("unset" where absent)."""
    old, new = Policy.from_toml(old_toml).to_dict(), Policy.from_toml(new_toml).to_dict()
    changes = [
        f"{key}: {old.get(key, 'unset')} → {new.get(key, 'unset')}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    return "; ".join(changes) or "nothing (same limits)"


def _budget_row(b: Budget) -> list[str]:
    """One row of `enclave budget`: with a refresh, cap and spent are this period's."""
    measure = "rho" if b.privacy_definition == "zcdp" else "epsilon"
    if measure == "rho":
        eq = f"{float(b.epsilon_equivalent_remaining):.4g}"
        cap, spent = b.rho_cap, b.rho_spent
        remaining = (
            f"{fmt.amount(b.rho_remaining)} (epsilon {eq} at delta "
            f"{fmt.amount(b.delta_equivalent_remaining)})"
        )
    else:
        cap, spent, remaining = b.epsilon_cap, b.epsilon_spent, fmt.amount(b.epsilon_remaining)
    lifetime = "; ".join(
        f"{fmt.amount(used)} of {fmt.amount(limit)}" + ("" if name == measure else f" ({name})")
        for name, (limit, used) in b.lifetime_caps.items()
    )
    refreshes = (
        "never"
        if b.next_refresh is None
        else f"{b.refresh}, next {b.next_refresh:%Y-%m-%d %H:%M} UTC"
    )
    return [
        b.dataset,
        measure,
        fmt.amount(cap),
        fmt.amount(spent),
        remaining,
        fmt.amount(b.delta_remaining),
        lifetime or "-",
        refreshes,
        _expiry(b),
    ]


def _expiry(b: Budget) -> str:
    return "never" if b.expires_at is None else f"{b.expires_at:%Y-%m-%d %H:%M} UTC"


def _utc_datetime(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or time (e.g. 2027-06-30T18:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class _ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._last = 0.0
        self._started = time.monotonic()

    def __call__(self, sent: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and sent < total:
            return
        self._last = now
        share = sent / total if total else 1.0
        filled = int(30 * share)
        rate = sent / max(now - self._started, 1e-6) / 1024**2
        sys.stderr.write(
            f"\r{self._label} [{'#' * filled}{'.' * (30 - filled)}] {share:6.1%} "
            f"{sent / 1024**2:,.1f}/{total / 1024**2:,.1f} MiB {rate:,.1f} MiB/s"
        )
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


#: Polars' allocator (jemalloc) keeps what a release or an upload freed: with
#: Polars' own setting (``muzzy_decay_ms:-1``, which ``import polars`` puts in
#: the environment unless one is there) an idle server held its largest working
#: set (3.0 GB after registering 10M rows; 0.3 GB with this). A background
#: thread returns freed pages after a second. Read when Polars loads: the
#: server sets it before that, over any value inherited from a parent process
#: that imported Polars.
JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``enclave`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "serve" and "polars" not in sys.modules:
        os.environ["_RJEM_MALLOC_CONF"] = JEMALLOC_CONF
    try:
        code = _run(args)
    except grpc.RpcError as err:
        print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
        code = 1
    except (EnclaveError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        code = 1
    except Exception as err:  # domain errors of --data-dir commands
        from ._status import DOMAIN_ERRORS

        if not isinstance(err, DOMAIN_ERRORS):
            raise
        print(f"error: {err}", file=sys.stderr)
        code = 1
    sys.exit(code)
