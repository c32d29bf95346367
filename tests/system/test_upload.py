"""Streamed uploads (`UploadDataset`): chunks, a checksum, nothing half-registered.

A provider's file travels as a header, chunks and a SHA-256 trailer. A wrong
checksum or size is DATA_LOSS, a stream cut short registers nothing, and in
every failed case the dataset's name stays free and no upload file is left in
the data directory, so the same upload can simply be retried.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import polars as pl
import pytest

from enclave import Client
from enclave.v1 import enclave_pb2 as pb


def _raw(client: Client, parts: Iterator[pb.UploadDatasetRequest]) -> pb.DatasetInfo:
    info: pb.DatasetInfo = client._catalog.UploadDataset(parts, metadata=client._metadata)
    return info


def _parts(
    name: str, data: bytes, schema: str, *, sha: str | None = None, size: int | None = None
) -> Iterator[pb.UploadDatasetRequest]:
    header = pb.UploadHeader(
        name=name, schema_toml=schema, format="csv", size=len(data) if size is None else size
    )
    yield pb.UploadDatasetRequest(header=header)
    for start in range(0, len(data), 4096):
        yield pb.UploadDatasetRequest(chunk=data[start : start + 4096])
    digest = hashlib.sha256(data).hexdigest() if sha is None else sha
    yield pb.UploadDatasetRequest(trailer=pb.UploadTrailer(sha256=digest))


def _nothing_left(server, name: str) -> None:
    """The name is free and no upload file remains (the server cleans up at once)."""
    assert server.app.catalog.get(name) is None
    uploads = server.app.data_dir / "uploads"
    deadline = time.monotonic() + 5
    while uploads.exists() and any(uploads.iterdir()):
        assert time.monotonic() < deadline, list(uploads.iterdir())
        time.sleep(0.05)


def test_a_file_streams_in_chunks_with_progress(server, dataset_files) -> None:
    data, schema = dataset_files
    seen: list[tuple[int, int]] = []
    with Client(server.address, server.provider_token) as provider:
        info = provider.register_dataset(
            "chunked",
            data,
            schema,
            progress=lambda sent, total: seen.append((sent, total)),
            chunk_size=1000,
        )
    assert info.name == "chunked"
    total = data.stat().st_size
    assert len(seen) == -(-total // 1000)  # one call per chunk
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)
    assert seen[-1] == (total, total)
    stored = server.app.catalog.get("chunked")
    assert stored is not None
    assert pl.read_parquet(stored.path).height == len(pl.read_csv(data))


def test_a_wrong_checksum_registers_nothing_and_a_retry_works(server, dataset_files) -> None:
    data, schema = dataset_files
    body, schema_text = data.read_bytes(), schema.read_text()
    with Client(server.address, server.provider_token) as provider:
        with pytest.raises(grpc.RpcError) as err:
            _raw(provider, _parts("checked", body, schema_text, sha="0" * 64))
        assert err.value.code() == grpc.StatusCode.DATA_LOSS
        assert "SHA-256 does not match" in err.value.details()
        assert "nothing was registered" in err.value.details()
        _nothing_left(server, "checked")
        assert _raw(provider, _parts("checked", body, schema_text)).name == "checked"


def test_a_size_other_than_announced_registers_nothing(server, dataset_files) -> None:
    data, schema = dataset_files
    body, schema_text = data.read_bytes(), schema.read_text()
    with Client(server.address, server.provider_token) as provider:
        for size in (len(body) - 1, len(body) + 1):
            with pytest.raises(grpc.RpcError) as err:
                _raw(provider, _parts("sized", body, schema_text, size=size))
            assert err.value.code() == grpc.StatusCode.DATA_LOSS
            _nothing_left(server, "sized")


def test_an_interrupted_upload_registers_nothing_and_a_retry_works(server, dataset_files) -> None:
    data, schema = dataset_files
    body, schema_text = data.read_bytes(), schema.read_text()

    def cut_short() -> Iterator[pb.UploadDatasetRequest]:
        for i, part in enumerate(_parts("cut", body, schema_text)):
            if i == 3:
                raise ConnectionError("the provider's laptop went to sleep")
            yield part

    def no_trailer() -> Iterator[pb.UploadDatasetRequest]:
        for part in _parts("cut", body, schema_text, size=0):
            if part.WhichOneof("part") != "trailer":
                yield part

    with Client(server.address, server.provider_token) as provider:
        with pytest.raises(grpc.RpcError) as err:
            _raw(provider, cut_short())
        assert err.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)
        _nothing_left(server, "cut")
        with pytest.raises(grpc.RpcError) as err:
            _raw(provider, no_trailer())
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ended before its trailer" in err.value.details()
        _nothing_left(server, "cut")
        assert provider.register_dataset("cut", data, schema).name == "cut"


def test_an_upload_starts_with_its_header(server) -> None:
    with (
        Client(server.address, server.provider_token) as provider,
        pytest.raises(grpc.RpcError) as err,
    ):
        _raw(provider, iter([pb.UploadDatasetRequest(chunk=b"visitor,age\n")]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "starts with its header" in err.value.details()


def test_researchers_cannot_upload(server, dataset_files) -> None:
    data, schema = dataset_files
    with (
        Client(server.address, server.researcher(None)) as researcher,
        pytest.raises(grpc.RpcError) as err,
    ):
        researcher.register_dataset("mine", data, schema)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    _nothing_left(server, "mine")


def test_newline_delimited_json_is_a_format(server, rows, dataset_files, tmp_path: Path) -> None:
    _data, schema = dataset_files
    path = tmp_path / "stays.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("from_json", path, schema)
    token = server.researcher(None, name="json_reader")
    with Client(server.address, server.provider_token) as provider:
        provider.grant("from_json", "json_reader", 1)
    with Client(server.address, token) as researcher:
        job = researcher.run(
            'result["n"] = release(dataset().count(), epsilon=1).value', "from_json"
        )
    # A count at ε = 1, one row per person: Laplace noise of scale 1, |noise| >= 50
    # with probability e^-50.
    assert abs(job.result["n"] - len(rows)) < 50


def test_what_needs_no_data_is_refused_before_the_file_is_sent(server) -> None:
    sent: list[int] = []

    def parts(name: str, schema: str) -> Iterator[pb.UploadDatasetRequest]:
        header = pb.UploadHeader(name=name, schema_toml=schema, format="csv")
        yield pb.UploadDatasetRequest(header=header)
        for i in range(1000):  # ~1 GB, were it all sent
            sent.append(i)
            yield pb.UploadDatasetRequest(chunk=b"x" * (1024 * 1024))

    with Client(server.address, server.provider_token) as provider:
        for name, schema, code in (
            ("stays", "max_rows = 10", grpc.StatusCode.ALREADY_EXISTS),
            ("Bad Name", "max_rows = 10", grpc.StatusCode.INVALID_ARGUMENT),
            ("fine", "not toml [", grpc.StatusCode.INVALID_ARGUMENT),
        ):
            sent.clear()
            with pytest.raises(grpc.RpcError) as err:
                _raw(provider, parts(name, schema))
            assert err.value.code() == code
            assert len(sent) < 100  # refused at the header, not after the gigabyte


MALFORMED_SCHEMA = """
max_rows = 10
privacy_unit = { column = "person", max_rows_per_person = 1 }
[columns.person]
type = "string"
[columns.age]
type = "int"
bounds = [0, 99]
"""


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "ragged",
            b"person,age\np1,20\np2,30,extra\n",
            "line 3 has 3 field(s) but the header has 2",
        ),
        ("latin1", "person,age\np\xe9,20\n".encode("latin-1"), "line 2 is not valid UTF-8"),
        ("wrongtype", b"person,age\np1,twenty\np2,30\n", "values are not int: row 1: 'twenty'"),
    ],
)
def test_a_malformed_csv_is_refused_naming_its_first_problem(
    server, tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_bytes(data)
    with (
        Client(server.address, server.provider_token) as provider,
        pytest.raises(grpc.RpcError) as err,
    ):
        provider.register_dataset(name, path, MALFORMED_SCHEMA)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()
    _nothing_left(server, name)
