"""Regenerate enclave/v1 from proto/ with grpcio-tools, or check it is fresh.

Usage: python scripts/gen_proto.py [--check]
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "enclave" / "v1"
GENERATED = ("enclave_pb2.py", "enclave_pb2.pyi", "enclave_pb2_grpc.py")


def generate(dest: Path) -> None:
    """Run protoc into dest and fix the imports to be package-relative."""
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(p) for p in sorted(PROTO_ROOT.rglob("*.proto"))),
        ]
        if protoc.main(args) != 0:
            sys.exit("protoc failed")
        dest.mkdir(parents=True, exist_ok=True)
        for name in GENERATED:
            text = (Path(tmp) / "enclave" / "v1" / name).read_text()
            text = text.replace("from enclave.v1 import enclave_pb2", "from . import enclave_pb2")
            (dest / name).write_text(text)


def main() -> None:
    """Generate, or with --check compare against a fresh generation."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if not args.check:
        generate(OUT)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = [n for n in GENERATED if not filecmp.cmp(Path(tmp) / n, OUT / n, shallow=False)]
    if stale:
        sys.exit(f"generated code is stale: {', '.join(stale)}; run `make proto`")
    print("generated code is up to date")


if __name__ == "__main__":
    main()
