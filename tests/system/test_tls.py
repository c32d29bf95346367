"""TLS and mutual TLS between the client (library and CLI) and a real server.

Certificates are made here, with the `cryptography` package: a CA, a server
certificate for 127.0.0.1 and localhost, and client certificates from the CA
and from a stranger CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from enclave import Client
from enclave._app import Enclave
from enclave._errors import InvalidArgument
from enclave._server import TlsConfig, start_server

Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _issue(name: str, issuer: Pair | None, *, ca: bool = False, server: bool = False) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256()), key


def _write(folder: Path, name: str, pair: Pair) -> tuple[Path, Path]:
    cert, key = pair
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = _issue("Enclave test CA", None, ca=True)
    stranger = _issue("Someone else's CA", None, ca=True)
    files: dict[str, Path] = {}
    files["ca"], _ = _write(folder, "ca", ca)
    files["stranger_ca"], _ = _write(folder, "stranger_ca", stranger)
    files["server"], files["server_key"] = _write(
        folder, "server", _issue("127.0.0.1", ca, server=True)
    )
    files["client"], files["client_key"] = _write(folder, "client", _issue("alice", ca))
    files["rogue"], files["rogue_key"] = _write(folder, "rogue", _issue("mallory", stranger))
    return files


def _app(tmp: Path) -> tuple[Enclave, str]:
    app = Enclave(tmp)
    _admin, token = app.principals.create("root", "admin", created_by="test")
    return app, token


@pytest.fixture
def tls_server(tmp_path: Path, pki: dict[str, Path]) -> Iterator[tuple[str, str]]:
    app, token = _app(tmp_path)
    running = start_server(
        app, "127.0.0.1:0", tls=TlsConfig.from_files(pki["server"], pki["server_key"])
    )
    yield f"127.0.0.1:{running.port}", token
    running.stop(grace=1)


@pytest.fixture
def mtls_server(tmp_path: Path, pki: dict[str, Path]) -> Iterator[tuple[str, str]]:
    app, token = _app(tmp_path)
    tls = TlsConfig.from_files(pki["server"], pki["server_key"], client_ca=pki["ca"])
    running = start_server(app, "127.0.0.1:0", tls=tls)
    yield f"127.0.0.1:{running.port}", token
    running.stop(grace=1)


def test_a_client_trusting_the_ca_talks_tls(tls_server, pki) -> None:
    address, token = tls_server
    with Client(address, token, tls_ca=pki["ca"]) as client:
        assert client.principals()[0].name == "root"


@pytest.mark.parametrize("how", ["plaintext", "untrusted CA"])
def test_a_tls_server_refuses_plaintext_and_unknown_cas(tls_server, pki, how: str) -> None:
    address, token = tls_server
    ca = None if how == "plaintext" else pki["stranger_ca"]
    with (
        Client(address, token, tls_ca=ca, timeout=5) as client,
        pytest.raises(grpc.RpcError) as err,
    ):
        client.principals()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_certificate_from_the_client_ca(mtls_server, pki) -> None:
    address, token = mtls_server
    with Client(
        address, token, tls_ca=pki["ca"], tls_cert=pki["client"], tls_key=pki["client_key"]
    ) as client:
        assert client.principals()[0].name == "root"
    for cert, key in ((None, None), (pki["rogue"], pki["rogue_key"])):
        with Client(address, token, tls_ca=pki["ca"], tls_cert=cert, tls_key=key, timeout=5) as c:
            with pytest.raises(grpc.RpcError) as err:
                c.principals()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_transport_choices_are_checked(tmp_path: Path, pki) -> None:
    app, _token = _app(tmp_path)
    tls = TlsConfig.from_files(pki["server"], pki["server_key"])
    for kwargs, fragment in (
        ({}, "--tls-cert and --tls-key"),
        ({"insecure": True, "tls": tls}, "not both"),
        ({"insecure": True, "listen": "0.0.0.0:0"}, "only allowed on loopback"),
    ):
        listen = kwargs.pop("listen", "127.0.0.1:0")
        with pytest.raises(InvalidArgument, match=fragment):
            start_server(app, listen, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="cannot read the TLS key"):
        TlsConfig.from_files(pki["server"], tmp_path)  # a directory
    (tmp_path / "key.der").write_bytes(b"\x30\x82 not pem")
    with pytest.raises(InvalidArgument, match="not a PEM file"):
        TlsConfig.from_files(pki["server"], tmp_path / "key.der")
    with pytest.raises(InvalidArgument, match="plaintext would expose your token"):
        Client("10.1.2.3:50051", "enc_x")
    with pytest.raises(InvalidArgument, match="both a client certificate and its key"):
        Client("127.0.0.1:1", "enc_x", tls_cert=pki["client"])
    app.close()


def test_the_cli_serves_and_calls_over_mutual_tls(tmp_path: Path, pki) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    enclave = [sys.executable, "-m", "enclave"]
    data_dir = tmp_path / "server"
    admin = subprocess.run(
        [*enclave, "admin", "create-principal", "root", "--role=admin", f"--data-dir={data_dir}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ready = tmp_path / "address"
    serve = [*enclave, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"]
    serve += ["--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"])]
    serve += ["--client-ca", str(pki["ca"]), "--ready-file", str(ready)]
    proc = subprocess.Popen(serve, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text()):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        call_env = env | {
            "ENCLAVE_ADDRESS": ready.read_text().strip(),
            "ENCLAVE_TOKEN": admin,
            "ENCLAVE_TLS_CA": str(pki["ca"]),
        }
        listed = subprocess.run(
            [
                *enclave,
                "--tls-cert",
                str(pki["client"]),
                "--tls-key",
                str(pki["client_key"]),
                *(
                    "admin",
                    "principals",
                ),
            ],
            env=call_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert "root" in listed.stdout
        refused = subprocess.run(
            [*enclave, "admin", "principals"],
            env=call_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 1 and "UNAVAILABLE" in refused.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
