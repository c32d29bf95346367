"""Uploads without a schema: a proposal, a draft nobody else sees, a confirmation.

The proposed schema names each column's type and candidate categories; the
ranges it observed in the data appear only as comments, and the proposal does
not parse until its provider writes public bounds in their place.
"""

from __future__ import annotations

import re

import grpc
import pytest

from enclave import Client
from jobs import Schema, SchemaError


def test_an_upload_without_schema_is_a_draft_with_a_proposal(server, dataset_files) -> None:
    data, schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        info = provider.register_dataset("drafted", data, None)
    assert info.draft and not info.columns
    proposal = info.proposed_schema_toml
    assert '[columns."region"]' in proposal and 'type = "category"' in proposal
    assert '"north"' in proposal  # candidate categories, for the provider to check
    assert 'type = "int"' in proposal and 'type = "float"' in proposal
    assert 'type = "bool"' in proposal  # CSV text true/false read as booleans
    # Observed ranges only in comments; the bounds themselves are left to choose.
    assert re.search(r"# observed: \S+ to \S+", proposal)
    assert "bounds = [?, ?]" in proposal and "max_rows = ?" in proposal
    with pytest.raises(SchemaError):
        Schema.from_toml(proposal)  # inferred ranges never become bounds by themselves
    # Invisible: not in the catalog, not to researchers, not to jobs.
    assert server.app.catalog.get("drafted") is None
    token = server.researcher(None, name="draft_peeker")
    with Client(server.address, token) as researcher:
        assert "drafted" not in [d.name for d in researcher.datasets()]
        with pytest.raises(grpc.RpcError) as err:
            researcher.describe_dataset("drafted")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # The provider completes the schema (here: the test's own) and confirms.
    with Client(server.address, server.provider_token) as provider:
        confirmed = provider.confirm_dataset("drafted", schema)
    assert not confirmed.draft and len(confirmed.columns) == 5
    assert server.app.catalog.get("drafted") is not None
    assert not (server.app.data_dir / "drafts" / "drafted").exists()


def test_a_draft_belongs_to_its_provider_and_survives_a_bad_schema(server, dataset_files) -> None:
    data, schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        info = provider.register_dataset("kept", data, None)
        with pytest.raises(grpc.RpcError) as err:
            provider.confirm_dataset("kept", info.proposed_schema_toml)  # bounds not chosen
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with Client(server.address, server.admin_token) as admin:
        other = admin.create_principal("other_provider", "provider")
    with Client(server.address, other) as stranger:
        with pytest.raises(grpc.RpcError) as err:
            stranger.confirm_dataset("kept", schema)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with Client(server.address, server.provider_token) as provider:
        assert provider.confirm_dataset("kept", schema).name == "kept"  # still there


def test_a_draft_cannot_take_a_registered_name_or_a_bad_one(server, dataset_files) -> None:
    data, _schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        with pytest.raises(grpc.RpcError) as err:
            provider.register_dataset("stays", data, None)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.RpcError) as err:
            provider.register_dataset("../escape", data, None)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not (server.app.data_dir / "escape").exists()


def test_a_draft_name_is_not_taken_over_by_another_provider(server, dataset_files) -> None:
    data, schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("mine_first", data, None)
    with Client(server.address, server.admin_token) as admin:
        rival = admin.create_principal("rival_provider", "provider")
    with Client(server.address, rival) as other:
        with pytest.raises(grpc.RpcError) as err:
            other.register_dataset("mine_first", data, None)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.RpcError) as err:
            other.confirm_dataset("../mine_first", schema)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with Client(server.address, server.provider_token) as provider:
        assert provider.confirm_dataset("mine_first", schema).name == "mine_first"


def test_deleting_a_dataset_purges_its_files_and_keeps_its_ledger(server, dataset_files) -> None:
    data, schema = dataset_files
    with Client(server.address, server.provider_token) as provider:
        provider.register_dataset("short_lived", data, schema)
    token = server.researcher(None, name="deleted_reader")
    with Client(server.address, server.provider_token) as provider:
        provider.grant("short_lived", "deleted_reader", 1)
    with Client(server.address, token) as researcher:
        researcher.run('result["n"] = release(dataset().count(), epsilon=0.5).value', "short_lived")
    folder = server.app.catalog.get("short_lived").path.parent
    assert any(folder.iterdir())
    with Client(server.address, server.admin_token) as admin:
        stranger = admin.create_principal("delete_stranger", "provider")
    with Client(server.address, stranger) as other:
        with pytest.raises(grpc.RpcError) as err:
            other.delete_dataset("short_lived")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with Client(server.address, server.provider_token) as provider:
        provider.delete_dataset("short_lived")
        provider.register_dataset("draft_to_drop", data, None)
        provider.delete_dataset("draft_to_drop")
    assert server.app.catalog.get("short_lived") is None and not folder.exists()
    assert not (server.app.data_dir / "drafts" / "draft_to_drop").exists()
    entries = server.app.ledger.entries(dataset="short_lived")
    assert len(entries) == 1 and entries[0].principal == "deleted_reader"
    with Client(server.address, token) as researcher:
        assert "short_lived" not in [d.name for d in researcher.datasets()]
        with pytest.raises(grpc.RpcError) as err:
            researcher.run('result["n"] = 1', "short_lived")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
