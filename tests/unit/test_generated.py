"""The generated gRPC code must match proto/ (regenerate with `make proto`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_stale_code_is_detected(tmp_path: Path) -> None:
    # Run the checker against a copy of the tree whose proto has one more field.
    import shutil

    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "proto", copy / "proto")
    shutil.copytree(ROOT / "enclave" / "v1", copy / "enclave" / "v1")
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    proto = copy / "proto" / "enclave" / "v1" / "enclave.proto"
    proto.write_text(
        proto.read_text().replace("message Cost {", "message Cost {\n  string note = 9;", 1)
    )
    done = subprocess.run(
        [sys.executable, str(copy / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "stale" in done.stderr
