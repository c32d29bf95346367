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
from pathlib import Path
from typing import Any

from ._errors import NotFound

#: Text columns with at most this many distinct values are proposed as categories.
MAX_PROPOSED_CATEGORIES = 50


def propose_schema(frame: Any) -> str:
    """A schema TOML for ``frame``, to be completed by its provider.

    Numbers get ``bounds = [?, ?]`` placeholders, and ``max_rows`` a ``?``,
    which do not parse: the provider must choose public bounds (the row count
    is exact data too). CSV text that reads as numbers or
    booleans is proposed as such.
    """
    import polars as pl

    lines = [
        "# Proposed from your file. Observed values are exact data: do not copy them",
        "# as bounds unless they are also public knowledge (e.g. a legal range).",
        f"# observed: {frame.height} rows",
        "max_rows = ?  # a public upper bound on the row count",
        'privacy_unit = "row"  # or { column = "person_id", max_rows_per_person = N }',
        "",
    ]
    for name in frame.columns:
        series = frame.get_column(name)
        if series.dtype == pl.String:
            series = _typed(series)
        lines.append(f"[columns.{json.dumps(name)}]")
        nullable = series.null_count() > 0
        if series.dtype == pl.Boolean:
            lines.append('type = "bool"')
        elif series.dtype.is_integer() or series.dtype.is_float():
            kind = "int" if series.dtype.is_integer() else "float"
            lines.append(f'type = "{kind}"')
            lo, hi = series.min(), series.max()
            lines.append(f"# observed: {lo} to {hi}")
            lines.append("bounds = [?, ?]  # choose public bounds")
        else:
            distinct = series.drop_nulls().unique()
            if distinct.len() <= MAX_PROPOSED_CATEGORIES:
                values = ", ".join(json.dumps(v) for v in sorted(distinct.to_list()))
                lines.append('type = "category"')
                lines.append(f"categories = [{values}]  # public list? add any missing")
            else:
                lines.append('type = "string"')
                lines.append(
                    f"# {distinct.len()} distinct values: set max_keys = N (a public bound) "
                    "to let researchers group on it"
                )
        if nullable:
            lines.append("nullable = true")
        lines.append("")
    return "\n".join(lines)


def _typed(series: Any) -> Any:
    """CSV text as bool, int or float where every non-null value reads as one."""
    import polars as pl

    text = series.str.strip_chars()
    lowered = text.str.to_lowercase()
    present = text.is_not_null()
    if lowered.filter(present).is_in(["true", "false"]).all() and present.any():
        return lowered == "true"
    for dtype in (pl.Int64, pl.Float64):
        cast = text.cast(dtype, strict=False)
        if (cast.is_not_null() == present).all() and present.any():
            return cast
    return series


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
