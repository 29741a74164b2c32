"""The contract is declared once and every transport serves all of it."""

from __future__ import annotations

import msgspec
import pytest

from balsamd.launch.leader.storeproc import ForkedStore
from balsamd.rpc import protocol
from balsamd.rpc.client import RemoteStore
from balsamd.store.contract import OPERATIONS, missing_operations
from balsamd.store.store import SiteStore


def test_the_local_store_implements_every_operation_with_the_declared_parameters() -> None:
    assert missing_operations(SiteStore) == []


@pytest.mark.parametrize("transport", [RemoteStore, ForkedStore])
def test_every_operation_has_a_stub_on_each_transport(transport: type) -> None:
    assert [name for name in OPERATIONS if not callable(getattr(transport, name, None))] == []


def test_the_rpc_serves_the_contract_and_the_daemons_own_methods_only() -> None:
    assert set(protocol.METHODS) == set(OPERATIONS) | {"ping", "status", "services", "shutdown"}


def test_each_operation_travels_as_a_struct_of_its_parameters() -> None:
    claim = OPERATIONS["claim"]
    assert [f.name for f in msgspec.structs.fields(claim.args)] == ["session_id", "limits", "now"]
    assert claim.write and claim.hot
    assert not OPERATIONS["filter"].write
    assert {name for name, op in OPERATIONS.items() if op.hot} == {
        "get", "resolve_id", "count", "counts_by_state", "heartbeat", "claim", "release", "update_states",
    }  # fmt: skip


def test_an_implementation_with_a_parameter_out_of_place_is_found() -> None:
    class Drifted(SiteStore):
        def release(self, job_ids: list[str], session_id: str, now: float | None = None) -> int:  # type: ignore[override]
            return 0

    assert missing_operations(Drifted) == [
        "release('job_ids', 'session_id', 'now'), declared ('session_id', 'job_ids', 'now')"
    ]
