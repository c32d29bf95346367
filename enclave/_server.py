"""The gRPC server: Enclave's services plus standard health checking and reflection.

Plaintext is allowed only with ``--insecure`` on a loopback address: bearer
tokens must not cross a network in clear. TLS arrives with the hardening issue
(TODO(#5)).
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


@dataclass
class RunningServer:
    """A started server and what is needed to stop it."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    app: Enclave

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
    insecure: bool,
    limits: Limits | None = None,
    max_concurrent_jobs: int = 4,
    rpc_threads: int = 32,
) -> RunningServer:
    """Start serving; returns once the port is bound (port 0 picks a free one)."""
    host, _port = split_listen(listen)
    if not insecure:
        raise InvalidArgument(
            "TLS is not available in this version: pass --insecure to serve plaintext, "
            "which is only allowed on a loopback address"
        )
    if not is_loopback(host):
        raise InvalidArgument(
            f"plaintext (--insecure) is only allowed on loopback, not on {host!r}: "
            "bearer tokens must not cross a network in clear"
        )
    from jobs._compiler import warm_up

    app.start_jobs(limits, max_concurrent_jobs)
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
    port = server.add_insecure_port(listen)
    if port == 0:
        raise InvalidArgument(f"could not bind {listen}")
    server.start()
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("enclave serving on %s:%d (data dir %s)", host, port, app.data_dir)
    return RunningServer(server, port, health_servicer, app)


def serve_forever(
    data_dir: Path,
    listen: str,
    *,
    insecure: bool,
    database_url: str | None = None,
    limits: Limits | None = None,
    max_concurrent_jobs: int = 4,
    ready_file: Path | None = None,
    grace: float = 30.0,
) -> None:
    """Run until SIGTERM or SIGINT, then drain and exit."""
    app = Enclave(data_dir, database_url)
    running = start_server(
        app, listen, insecure=insecure, limits=limits, max_concurrent_jobs=max_concurrent_jobs
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
