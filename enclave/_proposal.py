"""A schema proposed from a provider's file, and the drafts waiting for one.

When a provider uploads without a schema, the server reads the file and
proposes one: each column's type, candidate categories for text columns with
few distinct values, and, for numbers, the range it observed. Those observed
ranges are exact facts about the data: they appear only as comments, and the
proposal does not parse until the provider writes public bounds of their own
choosing in their place. Until then the upload is a *draft*: kept in the data
directory under ``drafts/``, owned by its provider, absent from the catalog
(researchers cannot see or name it).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._errors import NotFound

#: Text columns with at most this many distinct values are proposed as categories.
MAX_PROPOSED_CATEGORIES = 50


def propose_schema(frame: Any) -> str:
    """A schema TOML for ``frame``, to be completed by its provider (see `propose_from`)."""
    return propose_from([frame])


def propose_from(batches: Iterable[Any]) -> str:
    """A schema TOML for a file read as ``batches``, to be completed by its provider.

    Numbers get ``bounds = [?, ?]`` placeholders, and ``max_rows`` a ``?``,
    which do not parse: the provider must choose public bounds (the row count
    is exact data too). CSV text that reads as numbers or booleans (in every
    batch) is proposed as such. Memory is bounded by a batch: per column only
    counts, extremes and at most `MAX_PROPOSED_CATEGORIES` + 1 distinct values
    are kept.
    """
    rows = 0
    seen: dict[str, _Observed] = {}
    for frame in batches:
        rows += frame.height
        for name in frame.columns:
            seen.setdefault(name, _Observed()).add(frame.get_column(name))
    lines = [
        "# Proposed from your file. Observed values are exact data: do not copy them",
        "# as bounds unless they are also public knowledge (e.g. a legal range).",
        f"# observed: {rows} rows",
        "max_rows = ?  # a public upper bound on the row count",
        'privacy_unit = "row"  # or { column = "person_id", max_rows_per_person = N }',
        "",
    ]
    for name, observed in seen.items():
        lines.append(f"[columns.{json.dumps(name)}]")
        lines.extend(observed.proposal())
        if observed.nulls:
            lines.append("nullable = true")
        lines.append("")
    return "\n".join(lines)


class _Observed:
    """What one column showed over the batches, enough to propose its type."""

    def __init__(self) -> None:
        self.nulls = 0
        self.present = False
        #: How batches held it: "text" (CSV: all of them), "bool", "number", "other".
        self.kinds: set[str] = set()
        # For text: does every present value read as a bool, an int, a float?
        self.as_bool = self.as_int = self.as_float = True
        self.floats = False  # a batch held it as float numbers
        #: Observed (min, max) by reading: "int"/"float" of text, "native_int"/"native_float".
        self.extremes: dict[str, tuple[Any, Any]] = {}
        self.distinct: set[Any] = set()
        self.many = False  # more distinct values than could be categories

    def add(self, series: Any) -> None:
        import polars as pl

        self.nulls += series.null_count()
        dtype = series.dtype
        if dtype == pl.Null:
            return
        present = series.is_not_null()
        self.present = self.present or bool(present.any())
        if dtype == pl.String:
            self.kinds.add("text")
            values = series.str.strip_chars().filter(present)
            lowered = values.str.to_lowercase()
            self.as_bool = self.as_bool and bool(lowered.is_in(["true", "false"]).all())
            for kind, target in (("int", pl.Int64), ("float", pl.Float64)):
                cast = values.cast(target, strict=False)
                fits = cast.null_count() == 0
                setattr(self, f"as_{kind}", getattr(self, f"as_{kind}") and fits)
                if fits:
                    self._extremes(kind, cast)
            self._distinct(series)
        elif dtype == pl.Boolean:
            self.kinds.add("bool")
        elif dtype.is_integer() or dtype.is_float():
            self.kinds.add("number")
            self.floats = self.floats or dtype.is_float()
            self._extremes("native_float", series.cast(pl.Float64))
            if dtype.is_integer():
                self._extremes("native_int", series)
        else:
            self.kinds.add("other")
            self._distinct(series)

    def _extremes(self, key: str, values: Any) -> None:
        lo, hi = values.min(), values.max()
        if lo is None:
            return
        if key in self.extremes:
            old_lo, old_hi = self.extremes[key]
            lo, hi = min(lo, old_lo), max(hi, old_hi)
        self.extremes[key] = (lo, hi)

    def _distinct(self, series: Any) -> None:
        if self.many:
            return
        self.distinct.update(series.drop_nulls().unique().to_list())
        if len(self.distinct) > MAX_PROPOSED_CATEGORIES:
            self.many, self.distinct = True, set()

    def proposal(self) -> list[str]:
        """The column's lines of the proposed schema."""
        if self.kinds == {"text"} and self.present:
            if self.as_bool:
                return ['type = "bool"']
            for kind in ("int", "float"):
                if getattr(self, f"as_{kind}"):
                    return self._number(kind, self.extremes.get(kind))
        elif self.kinds == {"bool"}:
            return ['type = "bool"']
        elif self.kinds == {"number"}:
            kind = "float" if self.floats else "int"
            return self._number(kind, self.extremes.get(f"native_{kind}"))
        if not self.many:  # text, or a mix of kinds: its values as categories
            values = ", ".join(json.dumps(v) for v in sorted(self.distinct, key=str))
            return ['type = "category"', f"categories = [{values}]  # public list? add any missing"]
        return [
            'type = "string"',
            f"# more than {MAX_PROPOSED_CATEGORIES} distinct values: set max_keys = N (a public "
            "bound) to let researchers group on it",
        ]

    @staticmethod
    def _number(kind: str, extremes: tuple[Any, Any] | None) -> list[str]:
        lo, hi = extremes or (None, None)
        return [
            f'type = "{kind}"',
            f"# observed: {lo} to {hi}",
            "bounds = [?, ?]  # choose public bounds",
        ]


class Drafts:
    """Uploads waiting for their provider's schema, one folder per name."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def save(self, name: str, owner: str, upload: Path, fmt: str, proposal: str) -> None:
        """Keep ``upload`` (moved) as the draft ``name``, replacing an earlier one.

        The caller checks that no one else holds the name (`owner`).
        """
        folder = self._root / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shutil.move(upload, folder / f"data.{fmt}")
        (folder / "draft.json").write_text(
            json.dumps({"owner": owner, "format": fmt, "proposal": proposal})
        )

    def owner(self, name: str) -> str | None:
        """Who uploaded the draft ``name``, if there is one."""
        try:
            return str(json.loads((self._root / name / "draft.json").read_text())["owner"])
        except (OSError, ValueError, KeyError):
            return None

    def get(self, name: str, owner: str) -> tuple[Path, str, str]:
        """The draft's file, format and proposal.

        Raises:
            NotFound: no draft of that name by ``owner`` (another's looks absent).
        """
        meta_path = self._root / name / "draft.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = None
        if not meta or meta.get("owner") != owner:
            raise NotFound(f"you have no draft dataset called {name!r}")
        fmt = str(meta["format"])
        return self._root / name / f"data.{fmt}", fmt, str(meta["proposal"])

    def drop(self, name: str) -> None:
        """Delete the draft and its file."""
        shutil.rmtree(self._root / name, ignore_errors=True)
