"""Framing on the worker ↔ host pipes: 4-byte big-endian length, then UTF-8 JSON.

JSON (not pickle) because the worker is untrusted: the host must never
unpickle what a script could influence.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

MAX_MESSAGE = 16 * 1024 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed message."""


def send(stream: IO[bytes], message: Any) -> None:
    """Write one message and flush."""
    data = json.dumps(message, allow_nan=False, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message larger than {MAX_MESSAGE} bytes")
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            raise EOFError("peer closed the channel")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv(stream: IO[bytes]) -> Any:
    """Read one message.

    Raises:
        EOFError: the peer closed the pipe.
        ProtocolError: oversized or malformed message.
    """
    (size,) = struct.unpack(">I", _read_exact(stream, 4))
    if size > MAX_MESSAGE:
        raise ProtocolError(f"message of {size} bytes exceeds {MAX_MESSAGE}")
    try:
        return json.loads(_read_exact(stream, size), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ProtocolError("malformed message") from err


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; `send` never writes them, so a peer that does
    # is broken or hostile.
    raise ProtocolError(f"{name} is not valid JSON")
