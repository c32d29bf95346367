"""Tokens and roles: every method, every role, over a real server."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from enclave import Client
from enclave._auth import METHOD_ROLES
from enclave.v1 import enclave_pb2 as pb
from enclave.v1 import enclave_pb2_grpc as pb_grpc

REQUESTS = {
    "SubmitJob": pb.SubmitJobRequest(script="result['x'] = 1", dataset="stays", request_id="r"),
    "EstimateCost": pb.EstimateCostRequest(script="result['x'] = 1", dataset="stays"),
    "GetJob": pb.GetJobRequest(job_id="none"),
    "ListJobs": pb.ListJobsRequest(),
    "CancelJob": pb.CancelJobRequest(job_id="none"),
    "WatchJob": pb.WatchJobRequest(job_id="none"),
    "ListDatasets": pb.ListDatasetsRequest(),
    "DescribeDataset": pb.DescribeDatasetRequest(name="stays"),
    "RegisterDataset": pb.RegisterDatasetRequest(name="x", schema_toml="", format="csv"),
    # Client-streaming: `call` sends it as a one-message stream.
    "UploadDataset": pb.UploadDatasetRequest(
        header=pb.UploadHeader(name="x", schema_toml="", format="csv")
    ),
    "GrantAccess": pb.GrantAccessRequest(dataset="none", principal="none", epsilon_cap="1"),
    "GetBudget": pb.GetBudgetRequest(),
    "CreatePrincipal": pb.CreatePrincipalRequest(name="", role=pb.ROLE_RESEARCHER),
    "ListPrincipals": pb.ListPrincipalsRequest(),
    "SetPolicy": pb.SetPolicyRequest(dataset="none", policy_toml=""),
    "RevokeAccess": pb.RevokeAccessRequest(dataset="none", principal="none"),
    "GetPolicy": pb.GetPolicyRequest(dataset="stays"),
    "GetDatasetUsage": pb.GetDatasetUsageRequest(dataset="stays"),
    "ConfirmDataset": pb.ConfirmDatasetRequest(name="none", schema_toml=""),
    "GetQualityReport": pb.GetQualityReportRequest(name="none"),
    "DeleteDataset": pb.DeleteDatasetRequest(name="none"),
    "VerifyLedger": pb.VerifyLedgerRequest(),
    "GetLedgerHead": pb.GetLedgerHeadRequest(),
    "ListBudgets": pb.ListBudgetsRequest(),
    "ListLedger": pb.ListLedgerRequest(),
}
STUBS = {
    "JobService": pb_grpc.JobServiceStub,
    "CatalogService": pb_grpc.CatalogServiceStub,
    "BudgetService": pb_grpc.BudgetServiceStub,
    "AdminService": pb_grpc.AdminServiceStub,
    "AuditService": pb_grpc.AuditServiceStub,
}


def call(address: str, method: str, token: str | None) -> grpc.StatusCode:
    service, name = method.strip("/").split("/")
    service = service.split(".")[-1]
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(address) as channel:
        stub = STUBS[service](channel)
        try:
            request = REQUESTS[name]
            if name == "UploadDataset":
                request = iter([request])
            response = getattr(stub, name)(request, metadata=metadata, timeout=20)
            if name == "WatchJob":
                list(response)
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


def test_every_method_is_in_the_role_table() -> None:
    names = {m.rsplit("/", 1)[1] for m in METHOD_ROLES}
    for service in pb.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            assert method.name in names, method.full_name


@pytest.mark.parametrize("method", sorted(METHOD_ROLES))
def test_missing_and_unknown_tokens_are_unauthenticated(server, method) -> None:
    assert call(server.address, method, None) == grpc.StatusCode.UNAUTHENTICATED
    assert call(server.address, method, "enc_not_a_token") == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("method", sorted(METHOD_ROLES))
def test_role_matrix(server, method) -> None:
    tokens = {
        "researcher": server.researcher("1"),
        "provider": server.provider_token,
        "dpo": server.dpo_token,
        "admin": server.admin_token,
    }
    allowed = {r.value for r in METHOD_ROLES[method]}
    for role, token in tokens.items():
        code = call(server.address, method, token)
        if role in allowed:
            assert code not in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.UNAUTHENTICATED,
            ), (role, code)
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (role, code)


def test_health_and_reflection_need_no_token(server) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service="enclave.v1.JobService"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        [reply] = list(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
        names = {s.name for s in reply.list_services_response.service}
        assert {"enclave.v1.JobService", "grpc.health.v1.Health"} <= names


def test_researchers_see_only_granted_datasets_and_their_own_jobs(server) -> None:
    granted = server.researcher("1")
    stranger = server.researcher(None)
    with Client(server.address, granted) as client:
        assert [d.name for d in client.datasets()] == ["stays"]
        info = client.describe_dataset("stays")
        assert {c.name for c in info.columns} >= {"region", "nights"}
        job = client.run('result["x"] = 1', "stays")
    with Client(server.address, stranger) as client:
        assert client.datasets() == []
        with pytest.raises(grpc.RpcError) as err:
            client.describe_dataset("stays")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:
            client.get_job(job.job_id)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with Client(server.address, server.dpo_token) as dpo:
        assert dpo.get_job(job.job_id).script == 'result["x"] = 1'


def test_providers_grant_only_their_own_datasets_to_researchers(server) -> None:
    with Client(server.address, server.admin_token) as admin:
        rival = admin.create_principal("rival_provider", "provider")
    server.researcher(None, name="bob")
    with Client(server.address, rival) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.grant("stays", "bob", 1)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with Client(server.address, server.provider_token) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.grant("stays", "dpo", 1)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:
            client.grant("stays", "bob", "-1")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_tokens_are_stored_hashed(server) -> None:
    from sqlalchemy import text

    token = server.researcher(None)
    with server.app.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("select token_sha256 from principals"))]
    assert token not in stored
    assert all(len(h) == 64 for h in stored)
