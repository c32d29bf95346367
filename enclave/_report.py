"""The DPO's HTML budget report: who spent what, when, against which caps.

Built on the DPO's machine from what the audit RPCs return (the ledger, every
budget, every policy), so it shows exactly what the DPO could check by hand:
nothing in it comes from the confidential data. The page is one self-contained
file (charts are PNGs embedded as data URIs) that can be archived or mailed,
beside the ledger itself as CSV.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from ._client import Budget, LedgerRecord
from ._format import amount

TOP_CHARTS = 12  # researchers charted one by one; the table lists everyone


@dataclass(frozen=True, slots=True)
class DatasetCaps:
    """A dataset's measure and its dataset-wide cap (None: no cap)."""

    measure: str  # "epsilon" or "rho"
    cap: Decimal | None


def _spent(entry: LedgerRecord, measure: str) -> Decimal:
    return entry.cost.rho if measure == "rho" else entry.cost.epsilon


def _cap(budget: Budget, measure: str) -> Decimal:
    return budget.rho_cap if measure == "rho" else budget.epsilon_cap


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _cumulative(
    entries: Iterable[LedgerRecord], measure: str
) -> tuple[list[dt.datetime], list[float]]:
    times, totals, running = [], [], Decimal(0)
    for e in entries:
        running += _spent(e, measure)
        times.append(e.created_at)
        totals.append(float(running))
    return times, totals


def _step_chart(
    title: str,
    series: dict[str, list[LedgerRecord]],
    measure: str,
    caps: dict[str, tuple[Decimal, str]],
) -> str:
    """Cumulative spending per series, caps as horizontal lines; a PNG as base64."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, entries) in enumerate(sorted(series.items())):
        color = colors[i % len(colors)]
        times, totals = _cumulative(entries, measure)
        if times:
            ax.step(
                mdates.date2num(times),  # type: ignore[no-untyped-call]
                totals,
                where="post",
                label=name,
                color=color,
                linewidth=1.6,
            )
        if name in caps:
            cap, label = caps[name]
            ax.axhline(float(cap), color=color, linestyle="--", linewidth=1, label=label)
    for name, (cap, label) in caps.items():
        if name not in series:
            ax.axhline(float(cap), color="black", linestyle=":", linewidth=1.2, label=label)
    ax.xaxis_date()
    ax.set_title(title, fontsize=11)
    ax.set_ylabel(f"cumulative {measure}")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    fig.autofmt_xdate()
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def write_report(
    out: Path,
    entries: Sequence[LedgerRecord],
    budgets: Sequence[Budget],
    datasets: dict[str, DatasetCaps],
    *,
    generated_by: str,
    head: str,
    verified: bool,
) -> Path:
    """Write ``index.html`` and ``ledger.csv`` into ``out``; return the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ledger.csv", "w", newline="") as fh:
        rows = [e.to_json() for e in entries]
        writer = csv.DictWriter(fh, fieldnames=list(LEDGER_FIELDS))
        writer.writeheader()
        writer.writerows(rows)

    def measure_of(dataset: str) -> str:
        return datasets[dataset].measure if dataset in datasets else "epsilon"

    by_dataset: dict[str, dict[str, list[LedgerRecord]]] = defaultdict(lambda: defaultdict(list))
    by_principal: dict[str, dict[str, list[LedgerRecord]]] = defaultdict(lambda: defaultdict(list))
    versions: dict[str, list[LedgerRecord]] = defaultdict(list)
    debits = [e for e in entries if e.kind == "debit"]
    for e in entries:
        if e.kind != "debit":  # a new dataset version: listed under its dataset's chart
            versions[e.dataset].append(e)
    for e in debits:
        by_dataset[e.dataset][e.principal].append(e)
        by_principal[e.principal][e.dataset].append(e)
    budget_of = {(b.principal, b.dataset): b for b in budgets}

    sections: list[str] = []
    for dataset in sorted(set(by_dataset) | {b.dataset for b in budgets}):
        measure = measure_of(dataset)
        series = dict(by_dataset.get(dataset, {}))
        all_entries = sorted((e for es in series.values() for e in es), key=lambda e: e.seq)
        caps = {
            b.principal: (_cap(b, measure), f"{b.principal} cap")
            for b in budgets
            if b.dataset == dataset
        }
        if len(series) > 1:
            series["(all researchers)"] = all_entries
        wide = datasets.get(dataset)
        if wide is not None and wide.cap is not None:
            caps["(all researchers)"] = (wide.cap, "dataset-wide cap")
        chart = _step_chart(f"{dataset}: {measure} spent over time", series, measure, caps)
        changes = "".join(
            f"<li>version {e.dataset_version} uploaded by {html.escape(e.principal)} at "
            f"{e.created_at:%Y-%m-%d %H:%M} UTC"
            + (
                ": <b>a new budget period</b> (spending counted again from 0)"
                if e.kind == "new_period"
                else ": budgets carried over"
            )
            + "</li>"
            for e in versions.get(dataset, [])
        )
        periods = any(e.kind == "new_period" for e in versions.get(dataset, []))
        note = (
            "<p>The chart adds spending up over every budget period; the caps drawn apply "
            "to each period, from each version that started one.</p>"
            if periods
            else ""
        )
        sections.append(
            f"<h3>Dataset {html.escape(dataset)}</h3>"
            f'<img alt="{html.escape(dataset)} spending" src="data:image/png;base64,{chart}">'
            + (f"<ul>{changes}</ul>" if changes else "")
            + note
        )
    consumers = sorted(
        by_principal,
        key=lambda p: (
            -sum(
                float(_spent(e, measure_of(e.dataset)))
                for ds in by_principal[p].values()
                for e in ds
            )
        ),
    )
    for principal in consumers[:TOP_CHARTS]:
        series = by_principal[principal]
        # Measures differ across datasets; chart each researcher in epsilon where it is.
        measures = {measure_of(d) for d in series}
        measure = measures.pop() if len(measures) == 1 else "epsilon"
        caps = {
            d: (_cap(budget_of[(principal, d)], measure), f"{d} cap")
            for d in series
            if (principal, d) in budget_of and measure_of(d) == measure
        }
        chart = _step_chart(f"{principal}: {measure} spent over time", series, measure, caps)
        sections.append(
            f"<h3>Researcher {html.escape(principal)}</h3>"
            f'<img alt="{html.escape(principal)} spending" src="data:image/png;base64,{chart}">'
        )

    table = _consumers_table(debits, budgets, measure_of)
    status = "verified" if verified else "BROKEN (see enclave audit verify)"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Enclave privacy budget report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 60em; }}
table {{ border-collapse: collapse; font-size: 90%; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th:first-child, td:first-child, td:nth-child(2) {{ text-align: left; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Privacy budget report</h1>
<p>Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by {html.escape(generated_by)}.
{len(entries)} ledger entries; hash chain {status}; head <code>{html.escape(head)}</code>
(record it to detect later truncation). The full ledger is in <code>ledger.csv</code>.</p>
<h2>Largest consumers</h2>
{table}
<h2>Spending over time</h2>
<p>Cumulative spending in each dataset's measure (epsilon for pure DP, rho for zCDP);
dashed lines are caps. With a refresh window, researchers' caps are per period.</p>
{"".join(sections) or "<p>No spending yet.</p>"}
</body></html>
"""
    path = out / "index.html"
    path.write_text(page)
    return path


LEDGER_FIELDS = (
    "seq",
    "created_at",
    "kind",
    "principal",
    "dataset",
    "job_id",
    "release_index",
    "epsilon",
    "delta",
    "rho",
    "prev_hash",
    "hash",
    "dataset_version",  # last: added after the others, scripts read columns by position
)


def _consumers_table(
    entries: Sequence[LedgerRecord], budgets: Sequence[Budget], measure_of: Any
) -> str:
    spent: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    jobs: dict[tuple[str, str], set[str]] = defaultdict(set)
    last: dict[tuple[str, str], dt.datetime] = {}
    for e in entries:
        key = (e.principal, e.dataset)
        spent[key] += _spent(e, measure_of(e.dataset))
        jobs[key].add(e.job_id)
        last[key] = e.created_at
    budget_of = {(b.principal, b.dataset): b for b in budgets}
    rows = []
    for key in sorted(set(spent) | set(budget_of), key=lambda k: (-spent.get(k, Decimal(0)), k)):
        principal, dataset = key
        measure = measure_of(dataset)
        b = budget_of.get(key)
        cap = _cap(b, measure) if b is not None else None
        life = b.lifetime_caps.get(measure) if b is not None else None
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(cell))}</td>"
                for cell in (
                    principal,
                    dataset,
                    measure,
                    amount(spent.get(key, Decimal(0))),
                    "revoked or expired" if b is None else amount(cap or Decimal(0)),
                    "-" if life is None else f"{amount(life[1])} of {amount(life[0])}",
                    "-" if b is None or b.refresh == "none" else b.refresh,
                    len(jobs.get(key, ())),
                    f"{last[key]:%Y-%m-%d %H:%M}" if key in last else "-",
                )
            )
            + "</tr>"
        )
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "researcher",
            "dataset",
            "measure",
            "spent (all time)",
            "cap (per period)",
            "lifetime",
            "refresh",
            "jobs",
            "last release (UTC)",
        )
    )
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"
