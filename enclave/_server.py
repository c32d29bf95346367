"""The gRPC server: Enclave's services plus standard health checking and reflection.

Transport: TLS (``--tls-cert`` and ``--tls-key``), optionally mutual
(``--client-ca``: clients must present a certificate that CA signed, on top of
their bearer token). Plaintext is allowed only with ``--insecure`` on a loopback
address: bearer tokens must not cross a network in clear.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from jobs import Limits

from ._address import is_loopback, split_listen
from ._app import Enclave
from ._auth import AuthInterceptor
from ._errors import InvalidArgument
from ._servicers import (
    AdminServicer,
    AuditServicer,
    BudgetServicer,
    CatalogServicer,
    JobServicer,
)
from .v1 import enclave_pb2 as pb
from .v1 import enclave_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
SERVICE_NAMES = tuple(
    pb.DESCRIPTOR.services_by_name[name].full_name
    for name in ("JobService", "CatalogService", "BudgetService", "AdminService", "AuditService")
)


@dataclass(frozen=True)
class TlsConfig:
    """The server's certificate chain and key, and the CA of client certificates (mTLS)."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(cls, cert: Path, key: Path, client_ca: Path | None = None) -> TlsConfig:
        """Read PEM files.

        Raises:
            InvalidArgument: a file that cannot be read or is not PEM.
        """

        def pem(path: Path, what: str) -> bytes:
            try:
                data = path.read_bytes()
            except OSError as err:
                raise InvalidArgument(f"cannot read the {what} {path}: {err.strerror}") from None
            if b"-----BEGIN " not in data:
                raise InvalidArgument(f"the {what} {path} is not a PEM file")
            return data

        return cls(
            pem(cert, "TLS certificate"),
            pem(key, "TLS key"),
            None if client_ca is None else pem(client_ca, "client CA certificate"),
        )

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials; client certificates are required with a client CA."""
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@dataclass
class RunningServer:
    """A started server and what is needed to stop it."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    app: Enclave
    #: Each sandbox layer's status on this host ("active" or "unavailable: why").
    sandbox: dict[str, str]

    def stop(self, grace: float = 30.0) -> None:
        """Drain: refuse new calls and jobs, finish in-flight ones within ``grace`` s."""
        self.health.enter_graceful_shutdown()
        if hasattr(self.app, "jobs"):
            self.app.jobs.shutdown(grace)
        self.server.stop(grace).wait()
        self.app.close()


def start_server(
    app: Enclave,
    listen: str,
    *,
    insecure: bool = False,
    tls: TlsConfig | None = None,
    limits: Limits | None = None,
    max_concurrent_jobs: int = 4,
    max_jobs_per_researcher: int = 16,
    max_queued_jobs: int = 256,
    strict: bool = False,
    rpc_threads: int = 32,
) -> RunningServer:
    """Start serving; returns once the port is bound (port 0 picks a free one).

    The sandbox's OS layers are probed first, with a worker that applies them
    and tries what an escaped script would; each layer's status is logged and
    served by the health service as ``enclave.sandbox.LAYER`` (SERVING: active).

    Raises:
        InvalidArgument: neither TLS nor ``insecure``, both, or plaintext off
            loopback; or, with ``strict``, a sandbox layer this host lacks.
    """
    host, _port = split_listen(listen)
    if tls is not None and insecure:
        raise InvalidArgument("choose TLS (--tls-cert/--tls-key) or --insecure, not both")
    if tls is None and not insecure:
        raise InvalidArgument(
            "pass --tls-cert and --tls-key to serve TLS, or --insecure to serve plaintext "
            "on a loopback address"
        )
    if insecure and not is_loopback(host):
        raise InvalidArgument(
            f"plaintext (--insecure) is only allowed on loopback, not on {host!r}: "
            "bearer tokens must not cross a network in clear; use --tls-cert and --tls-key"
        )
    from jobs._compiler import warm_up
    from jobs._sandbox import Isolation, probe_isolation

    probe = probe_isolation(Isolation(hide=str(app.data_dir)))
    layers: dict[str, str] = probe["layers"]
    for name, status in layers.items():
        log.log(
            logging.INFO if status == "active" else logging.WARNING,
            "sandbox layer %s: %s",
            name,
            status,
        )
    missing = {name: status for name, status in layers.items() if status != "active"}
    if strict and missing:
        raise InvalidArgument(
            "refusing to start in --strict mode: sandbox layer(s) unavailable on this host: "
            + "; ".join(f"{name} ({status})" for name, status in missing.items())
            + " (docs/security.md says what each layer needs)"
        )
    app.start_jobs(
        limits, max_concurrent_jobs, max_jobs_per_researcher, max_queued_jobs, strict=strict
    )
    warm_up()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=rpc_threads, thread_name_prefix="enclave-rpc"),
        interceptors=[AuthInterceptor(app.principals)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    pb_grpc.add_JobServiceServicer_to_server(JobServicer(app), server)
    pb_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(app), server)
    pb_grpc.add_BudgetServiceServicer_to_server(BudgetServicer(app), server)
    pb_grpc.add_AdminServiceServicer_to_server(AdminServicer(app), server)
    pb_grpc.add_AuditServiceServicer_to_server(AuditServicer(app), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = (
        server.add_insecure_port(listen)
        if tls is None
        else server.add_secure_port(listen, tls.credentials())
    )
    if port == 0:
        raise InvalidArgument(f"could not bind {listen}")
    server.start()
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    for name, status in layers.items():
        health_servicer.set(
            f"enclave.sandbox.{name}",
            health_pb2.HealthCheckResponse.SERVING
            if status == "active"
            else health_pb2.HealthCheckResponse.NOT_SERVING,
        )
    transport = "plaintext" if tls is None else "mutual TLS" if tls.client_ca else "TLS"
    log.info("enclave serving %s on %s:%d (data dir %s)", transport, host, port, app.data_dir)
    return RunningServer(server, port, health_servicer, app, layers)


def _raise_open_files(want: int = 65_536) -> None:
    """Lift the soft limit on open files towards the hard one.

    A large upload's person truncation and quality report write up to
    `enclave._catalog.MAX_PERSON_PARTITIONS` spill files at once; a few
    concurrent ones would pass the usual soft limit of 1024. Job workers set
    their own, far lower, limit.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("open files limit raised from %d to %d", soft, target)


def serve_forever(
    data_dir: Path,
    listen: str,
    *,
    insecure: bool = False,
    tls: TlsConfig | None = None,
    database_url: str | None = None,
    limits: Limits | None = None,
    max_concurrent_jobs: int = 4,
    max_jobs_per_researcher: int = 16,
    max_queued_jobs: int = 256,
    strict: bool = False,
    ready_file: Path | None = None,
    grace: float = 30.0,
    replica: str | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then drain and exit."""
    _raise_open_files()
    app = Enclave(data_dir, database_url, replica)
    running = start_server(
        app,
        listen,
        insecure=insecure,
        tls=tls,
        limits=limits,
        max_concurrent_jobs=max_concurrent_jobs,
        max_jobs_per_researcher=max_jobs_per_researcher,
        max_queued_jobs=max_queued_jobs,
        strict=strict,
    )
    host, _ = split_listen(listen)
    address = f"{host}:{running.port}"
    print(f"enclave listening on {address}", flush=True)
    if ready_file is not None:
        ready_file.write_text(address)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: draining", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while not stop.wait(0.5):
        pass
    running.stop(grace)
    print("enclave stopped", flush=True)
