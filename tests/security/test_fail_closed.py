"""The policy fails closed (ASVS 4.1.5, docs/access-policy.md): a fault inside the decision refuses, the request
gets no data, and the refusal is in the trace. Faults are injected into the real app through the real API.

Whatever the fault, nothing of the record leaves: not the name, not the INS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from espace_sante.access import policy
from espace_sante.access.reasons import Code, Reason
from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from espace_sante.storage.keys import DIRECTORY_SPACE
from tests.factories import BASE, FHIR_JSON, new_nir, patient


class Fault(Exception):
    """The injected fault."""


def _raise(*_: Any, **__: Any) -> Any:
    raise Fault("injected")


async def _holder(fhir: httpx.AsyncClient, runtime: Runtime, app: Any) -> tuple[str, str, httpx.AsyncClient]:
    """A new person (created by a feed) and an API client signed in as her. Returns (INS, Patient id, client).
    The client gets the app's answer to an internal error, as a real server sends it, instead of the
    exception the test transport would raise by default."""
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir, name=[{"family": "Zéphyrin"}]), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    issued = await devtokens.issue(runtime, f"holder:{nir}", "patient/*.read")
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {issued.access_token}", "Accept": "application/fhir+json"},
    )
    return nir, created.json()["id"], client


async def _refusal(runtime: Runtime, request_id: str) -> Any:
    """The refusal recorded for this request, in the directory's chain (audit/trace.refusal)."""
    return await runtime.db.read(
        "test_refusal",
        lambda conn: conn.fetchrow(
            "SELECT action, outcome, actor_kind, basis, entity_type, detail FROM audit_event "
            "WHERE space_id = $1 AND request_id = $2",
            DIRECTORY_SPACE,
            request_id,
        ),
    )


def _no_data(response: httpx.Response, nir: str) -> None:
    assert response.json()["resourceType"] == "OperationOutcome"
    assert nir not in response.text and "Zéphyrin" not in response.text


async def test_a_fault_in_a_rule_refuses_and_the_refusal_is_traced(
    fhir: httpx.AsyncClient, runtime: Runtime, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder reads her own record; then the rule that lets her breaks: she is answered as for a record
    she has no basis on, and the trace shows the refusal."""
    nir, pid, holder = await _holder(fhir, runtime, app)
    assert (await holder.get(f"/Patient/{pid}")).status_code == 200

    monkeypatch.setattr(policy, "_person_rule", _raise)
    refused = await holder.get(f"/Patient/{pid}")
    assert refused.status_code == 404
    _no_data(refused, nir)
    record = await _refusal(runtime, refused.headers["x-request-id"])
    assert record is not None
    assert (record["action"], record["outcome"], record["actor_kind"], record["entity_type"]) == (
        "access:refused",
        "8",
        "holder",
        "Patient",
    )


async def test_a_fault_in_the_policy_itself_refuses_the_interaction_and_is_traced(
    fhir: httpx.AsyncClient, runtime: Runtime, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole decision raises, before any fact is read: a 403 naming a policy error, traced as such."""
    nir, pid, holder = await _holder(fhir, runtime, app)
    monkeypatch.setattr(policy, "_decide", _raise)
    for path in (f"/Patient/{pid}", f"/Patient?identifier={nir}", f"/Observation?patient={pid}"):
        refused = await holder.get(path)
        assert refused.status_code == 403, (path, refused.text)
        _no_data(refused, nir)
        assert "access rule error" in refused.json()["issue"][0]["diagnostics"]
        record = await _refusal(runtime, refused.headers["x-request-id"])
        assert record is not None
        assert (record["action"], record["basis"]) == ("access:refused", Reason(Code.POLICY_ERROR).recorded)


async def test_a_feed_is_refused_too_when_the_policy_breaks(
    fhir: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Machines have their own branch of the policy; a fault there refuses them the same way."""
    created = await fhir.post("/Patient", json=patient(), headers=FHIR_JSON)
    assert created.status_code == 201
    monkeypatch.setattr(policy, "_decide", _raise)
    refused = await fhir.get(f"/Patient/{created.json()['id']}")
    assert refused.status_code == 403
    record = await _refusal(runtime, refused.headers["x-request-id"])
    assert record is not None and record["actor_kind"] == "client"


async def test_a_fault_reading_the_facts_gives_no_data(
    fhir: httpx.AsyncClient, runtime: Runtime, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The facts the policy decides on cannot be read: the request fails as a whole (an internal error with
    its request id), and nothing of the record is in the answer."""
    nir, pid, holder = await _holder(fhir, runtime, app)
    monkeypatch.setattr(access_store, "facts", _raise)
    failed = await holder.get(f"/Patient/{pid}")
    assert failed.status_code == 500
    _no_data(failed, nir)
    assert failed.json()["issue"][0]["diagnostics"].startswith("erreur interne / internal error (id ")
