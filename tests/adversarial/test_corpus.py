"""The adversarial corpus: every payload in ``payloads/`` against a real server.

Each payload is a job script (``NNN_name.job``; not ``.py``, so that neither ruff
nor pytest's ``--doctest-modules`` treats an attack as a module) whose header says
what must happen to it::

    # expect: FAILED INVALID_ARGUMENT   (final state and error code, SUCCEEDED, or
    #                                     REJECTED CODE: SubmitJob itself refused it)
    # charged: 0                        (exact ε the job is charged)
    # category: escape | capability | dp-bypass | resource | state | exception
    # why: what the attack tries
    # xfail: reason                     (optional: a known hole, strict xfail)
    # slow: yes                         (optional: marked slow)

For each payload, on one module-scoped server with the canary dataset: the state
and code match; the job's cost and the researcher's budget both equal
``charged``; no canary text reaches the result, the printed output, the error
message, the released values or any server log record; and afterwards the
server's health check answers SERVING and a normal job from a fresh researcher
succeeds with a plausible count and an intact API (so a payload that poisoned
shared state shows up on the job after it).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from canaries import CANARIES, CANARY_DATASET, CANARY_ROWS, VAULT_SCHEMA, write_vault

from enclave import Client

PAYLOAD_DIR = Path(__file__).parent / "payloads"
CATEGORIES = ("escape", "capability", "dp-bypass", "resource", "state", "exception")
STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "REJECTED")
#: The budget each payload's researcher gets on the canary dataset.
GRANT = Decimal(1)
#: How much longer than the server's wall-clock limit a job may take to be final.
DEADLINE_MARGIN = 5.0

#: The job run after every payload: it must find the API and builtins intact.
CONTROL_SCRIPT = """
assert result == {}
assert sorted([3, 1, 2]) == [1, 2, 3] and sum([1, 2]) == 3 and len("abc") == 3
assert str(1) == "1" and max(1, 2) == 2 and min([4, 5]) == 4 and "a".upper() == "A"
assert dict.fromkeys(["k"]) == {"k": None}
assert repr(dataset("vault")) == "<rows of 'vault'>"
assert repr(col("amount") > 1) == "<expression (col('amount') gt 1)>"
n = release(dataset("vault").count(), epsilon=0.1)
print("count", round(n.value))
result["n"] = n
"""

_HEADER_KEYS = ("expect", "charged", "category", "why", "xfail", "slow")
_researchers = itertools.count(1)


@dataclass(frozen=True)
class Payload:
    """One attack script and what must happen to it."""

    path: Path
    source: str
    state: str
    code: str
    charged: Decimal
    category: str
    why: str
    xfail: str | None
    slow: bool

    @property
    def name(self) -> str:
        return self.path.stem


def parse_payload(path: Path) -> Payload:
    """Read a payload's header (leading ``# key: value`` lines) and check it.

    Raises:
        ValueError: naming the file and what is wrong with its header.
    """
    source = path.read_text()
    header: dict[str, str] = {}
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].partition(":")
        key = key.strip()
        if not sep or key not in _HEADER_KEYS:
            raise ValueError(f"{path.name}: unknown header line {line!r}")
        if key in header:
            raise ValueError(f"{path.name}: header {key!r} given twice")
        header[key] = value.strip()
    missing = {"expect", "charged", "category", "why"} - set(header)
    if missing:
        raise ValueError(f"{path.name}: header lacks {', '.join(sorted(missing))}")
    state, _, code = header["expect"].partition(" ")
    if state not in STATES or (state == "SUCCEEDED") != (code == ""):
        raise ValueError(f"{path.name}: bad expect {header['expect']!r}")
    if header["category"] not in CATEGORIES:
        raise ValueError(f"{path.name}: bad category {header['category']!r}")
    if header.get("xfail") == "":
        raise ValueError(f"{path.name}: xfail needs a reason")
    if header.get("slow", "yes") != "yes":
        raise ValueError(f"{path.name}: slow takes 'yes'")
    return Payload(
        path=path,
        source=source,
        state=state,
        code=code.strip(),
        charged=Decimal(header["charged"]),
        category=header["category"],
        why=header["why"],
        xfail=header.get("xfail"),
        slow="slow" in header,
    )


PAYLOADS = [parse_payload(p) for p in sorted(PAYLOAD_DIR.glob("*.job"))]


def _params() -> Iterator[Any]:
    for payload in PAYLOADS:
        marks: list[Any] = []
        if payload.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=payload.xfail))
        if payload.slow:
            marks.append(pytest.mark.slow)
        yield pytest.param(payload, id=payload.name, marks=marks)


@dataclass(frozen=True)
class Outcome:
    """What became of a submitted script, as the researcher sees it."""

    state: str
    code: str
    message: str
    result: Any
    printed: str
    cost: Decimal
    spent: Decimal
    releases: tuple[Any, ...]


def fresh_researcher(server: Any, dataset: str, epsilon: Decimal = GRANT) -> str:
    """A new researcher granted ``epsilon`` on ``dataset`` only; returns the token."""
    name = f"adversary{next(_researchers)}"
    token: str = server.researcher(None, name=name)
    with Client(server.address, server.provider_token) as provider:
        provider.grant(dataset, name, str(epsilon))
    return token


def run_script(server: Any, token: str, script: str, dataset: str, deadline: float) -> Outcome:
    """Submit ``script`` and follow it to a final state (at most ``deadline`` seconds)."""
    with Client(server.address, token) as client:
        try:
            job = client.submit(script, dataset, wait=False)
        except grpc.RpcError as err:  # refused at submission: no job exists
            [budget] = client.budget(dataset)
            code, message = err.code().name, err.details() or ""
            return Outcome(
                "REJECTED", code, message, None, "", Decimal(0), budget.epsilon_spent, ()
            )
        end = time.monotonic() + deadline
        while not job.final:
            if time.monotonic() > end:
                pytest.fail(
                    f"job {job.job_id} was still {job.state} after {deadline:g} s: the server "
                    "no longer finishes it (a wedged worker slot)"
                )
            time.sleep(0.02)
            job = client.get_job(job.job_id)
        [budget] = client.budget(dataset)
    return Outcome(
        job.state,
        job.error_code,
        job.error_message,
        job.result,
        job.printed,
        job.cost_epsilon,
        budget.epsilon_spent,
        tuple(r.value for r in job.releases),
    )


def _leaks(texts: dict[str, str], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{secret!r} in {where}"
        for where, text in texts.items()
        for secret in forbidden
        if secret in text
    ]


def _log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(r) for r in records)


_wedged: list[str] = []


@pytest.fixture(scope="module")
def vault(server: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The canary dataset, registered by the server's provider; returns its name.

    (A fixture here rather than in a ``conftest.py``: a second module named
    ``conftest`` would shadow ``tests/conftest.py``, which other tests import.)
    """
    path = write_vault(tmp_path_factory.mktemp("vault"))
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset(CANARY_DATASET, path, VAULT_SCHEMA)
    return CANARY_DATASET


@pytest.mark.parametrize("payload", list(_params()))
def test_payload(
    payload: Payload, server: Any, vault: str, caplog: pytest.LogCaptureFixture
) -> None:
    if _wedged:
        pytest.fail(f"the server stopped finishing jobs after payload {_wedged[0]}")
    caplog.set_level(logging.DEBUG)
    token = fresh_researcher(server, vault)
    deadline = server.app.jobs.limits.wall_seconds + DEADLINE_MARGIN
    outcome = run_script(server, token, payload.source, vault, deadline)

    seen = f"{outcome.state} {outcome.code}".strip()
    assert (outcome.state, outcome.code) == (payload.state, payload.code), (
        f"{payload.name}: expected {payload.state} {payload.code}, got {seen}: "
        f"{outcome.message[:500]!r}"
    )
    assert outcome.cost == payload.charged, f"job charged {outcome.cost}"
    assert outcome.spent == payload.charged, f"budget spent {outcome.spent}"

    visible = {
        "result": json.dumps(outcome.result),
        "printed": outcome.printed,
        "error message": outcome.message,
        "released values": json.dumps(outcome.releases),
    }
    host_paths = (str(server.app.data_dir),)
    assert not _leaks(visible, CANARIES + host_paths)
    assert not _leaks({"server log": _log_text(caplog.records)}, CANARIES)
    assert len(outcome.printed.encode()) <= server.app.jobs.limits.max_printed_bytes + 100

    control = check_server_still_sound(server, vault, after=payload.name)
    assert not _leaks(
        {"control job": json.dumps(control.result) + control.printed + control.message},
        CANARIES + host_paths,
    )
    assert not _leaks({"server log": _log_text(caplog.records)}, CANARIES)


def check_server_still_sound(server: Any, vault: str, after: str) -> Outcome:
    """Health answers SERVING and a normal job by a fresh researcher runs as it should.

    Returns the normal job's outcome. If it never finishes, every later payload
    fails at once (the server's worker slots are wedged).
    """
    with Client(server.address, server.admin_token) as admin:
        assert admin.health("") == "SERVING"
    token = fresh_researcher(server, vault)
    try:
        deadline = server.app.jobs.limits.wall_seconds + DEADLINE_MARGIN
        control = run_script(server, token, CONTROL_SCRIPT, vault, deadline)
    except pytest.fail.Exception:
        _wedged.append(after)
        raise
    assert (control.state, control.code) == ("SUCCEEDED", ""), control.message
    assert control.cost == control.spent == Decimal("0.1")
    released = control.result["n"]
    assert set(control.result) == {"n"}
    assert released["aggregate"] == "count"
    assert released["mechanism"] == "Integer Laplace"
    assert released["noise_scale"] == pytest.approx(10, rel=1e-6)
    # True count 300, Laplace noise of scale 10: off by 200 (20 scales) with
    # probability e^-20 per job; by far more only through a broken API.
    assert abs(released["value"] - CANARY_ROWS) <= 200
    assert control.printed == f"count {round(released['value'])}\n"
    assert control.releases == (released,)
    return control


# --- the corpus itself ---------------------------------------------------------------


def test_corpus_is_complete_and_well_formed() -> None:
    assert len(PAYLOADS) >= 60
    numbers = [p.name.split("_", 1)[0] for p in PAYLOADS]
    assert all(n.isdigit() and len(n) == 3 for n in numbers)
    assert len(set(numbers)) == len(numbers), "payload numbers must be unique"
    assert {p.category for p in PAYLOADS} == set(CATEGORIES)
    for p in PAYLOADS:
        # A payload that spelled a canary would trip the leak checks by itself.
        assert not _leaks({p.name: p.source}, CANARIES)
        assert p.charged >= 0
        assert p.state != "REJECTED" or p.charged == 0
