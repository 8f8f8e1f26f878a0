"""Findings of the security review of issue 16's fixes, each a story of what an attacker sent."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from espace_sante import outbound
from espace_sante.access.reasons import Code, Reason, from_recorded
from espace_sante.settings import Settings


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a00:1",
        "2002:a9fe:a9fe::1",
        "::a9fe:a9fe",
        "fec0::1",
        "::ffff:10.0.0.1",
    ],
)
def test_an_ipv6_address_that_carries_a_private_ipv4_is_not_public(address: str) -> None:
    """A `jwks_uri` whose host resolves to a NAT64, 6to4 or IPv4-compatible address would reach the metadata
    service or the internal network through the gateway that translates it."""
    assert not outbound._public(address)


def test_a_public_ipv6_address_stays_public() -> None:
    assert outbound._public("2a00:1450:4007:80e::200e")


def test_a_loose_trusted_proxy_network_is_refused_at_start() -> None:
    """uvicorn ignores `10.0.0.1/8`: accepted, it would trust no proxy and give everyone one address."""
    with pytest.raises(ValidationError):
        Settings(trusted_proxies="10.0.0.1/8")
    assert Settings(trusted_proxies="10.0.0.0/8, 192.0.2.7").trusted_proxies == "10.0.0.0/8,192.0.2.7"


def test_a_tampered_reason_with_odd_parameter_names_still_reads() -> None:
    """A trace row edited to carry `code=` or `cls=` parameters reads as data, not as a 500 on the trace pages."""
    assert from_recorded("policy:consent?code=x&cls=y") == Reason(Code.CONSENT, (("cls", "y"), ("code", "x")))


async def test_superscript_digits_in_paging_are_a_clean_400(fhir: object) -> None:
    import httpx

    assert isinstance(fhir, httpx.AsyncClient)
    answer = await fhir.get("/Patient/_history?_count=%C2%B2")
    assert answer.status_code == 400
    assert answer.json()["resourceType"] == "OperationOutcome"


async def test_superscript_digits_in_a_version_or_a_trace_page_are_clean_answers(fhir: object) -> None:
    import httpx

    from tests.factories import FHIR_JSON, patient

    assert isinstance(fhir, httpx.AsyncClient)
    created = await fhir.post("/Patient", json=patient(), headers=FHIR_JSON)
    pid = created.json()["id"]
    vread = await fhir.get(f"/Patient/{pid}/_history/%C2%B2")
    assert vread.status_code in (400, 404) and vread.json()["resourceType"] == "OperationOutcome"
    page = await fhir.get("/AuditEvent", params={"patient": f"Patient/{pid}", "_upto": "²"})
    assert page.status_code in (400, 403, 404) and page.json()["resourceType"] == "OperationOutcome"
