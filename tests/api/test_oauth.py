"""Machine clients: the OAuth 2 client-credentials grant with SMART `system/` scopes (v1 and v2 syntax), the
scopes enforced per type and interaction, SMART discovery, and the CapabilityStatement as the one open door."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import httpx
import pytest

from espace_sante.app import create_app
from espace_sante.fhir.searchparams import params_for
from espace_sante.fhir.validation import RESOURCE_TYPES
from espace_sante.oauth import clients as oauth_clients
from espace_sante.runtime import Runtime
from tests.conftest import TokenFactory
from tests.factories import BASE, FHIR_JSON, patient


async def _token(http: httpx.AsyncClient, client: oauth_clients.NewClient, **form: str) -> httpx.Response:
    return await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=(client.client_id, client.client_secret),
    )


def _as(http: httpx.AsyncClient, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=http._transport,
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
    )


def observation(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Poids"},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


# --- the token endpoint ------------------------------------------------------------------------------------


async def test_client_credentials_with_http_basic(http: httpx.AsyncClient, runtime: Runtime) -> None:
    """A registered feed authenticates with HTTP Basic and gets a short-lived Bearer token for its scopes,
    without a refresh token, that nobody may cache."""
    client = await oauth_clients.create_client(runtime, "labo basic", "system/*.read")
    response = await _token(http, client)
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert 0 < token["expires_in"] <= 300
    assert token["scope"] == "system/*.read"
    assert "refresh_token" not in token
    assert len(token["access_token"]) >= 32
    assert response.headers["cache-control"] == "no-store"
    assert (await _as(http, token["access_token"]).get("/Patient", params={"_count": "1"})).status_code == 200


async def test_client_credentials_with_the_secret_in_the_form(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    client = await oauth_clients.create_client(runtime, "labo post", "system/Patient.rs")
    response = await http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/Patient.rs"


async def test_secrets_and_tokens_are_stored_hashed(http: httpx.AsyncClient, runtime: Runtime) -> None:
    """The database holds SHA-256 digests, never the secret or the token themselves."""
    client = await oauth_clients.create_client(runtime, "hash check", "system/*.read")
    token = (await _token(http, client)).json()["access_token"]
    stored = await runtime.db.fetchval(
        "test_secret", "SELECT secret_hash FROM oauth_client WHERE client_id = $1", client.client_id
    )
    assert bytes(stored) == hashlib.sha256(client.client_secret.encode()).digest()
    held = await runtime.db.fetchval(
        "test_token",
        "SELECT count(*) FROM oauth_token WHERE token_hash = $1",
        hashlib.sha256(token.encode()).digest(),
    )
    assert held == 1


async def test_a_wrong_secret_is_invalid_client(http: httpx.AsyncClient, runtime: Runtime) -> None:
    """A wrong secret, by Basic or in the form, or an unknown client: 401 invalid_client, no token."""
    client = await oauth_clients.create_client(runtime, "labo wrong", "system/*.read")
    basic = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret + "x"),
    )
    assert basic.status_code == 401, basic.text
    assert basic.json()["error"] == "invalid_client"
    assert "access_token" not in basic.json()
    form = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client.client_id, "client_secret": "nope"},
    )
    assert form.status_code == 401
    assert form.json()["error"] == "invalid_client"
    unknown = await http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=("cli_unknown", "whatever")
    )
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "invalid_client"
    anonymous = await http.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "invalid_client"


async def test_an_unknown_grant_type_is_refused(http: httpx.AsyncClient, runtime: Runtime) -> None:
    client = await oauth_clients.create_client(runtime, "labo grant", "system/*.read")
    for grant in ("password", "authorization_code", "refresh_token"):
        response = await http.post(
            "/oauth/token", data={"grant_type": grant}, auth=(client.client_id, client.client_secret)
        )
        assert response.status_code == 400, (grant, response.text)
        assert response.json()["error"] in ("unsupported_grant_type", "unauthorized_client"), response.json()
    missing = await http.post(
        "/oauth/token", data={"scope": "system/*.read"}, auth=(client.client_id, client.client_secret)
    )
    assert missing.status_code == 400
    assert missing.json()["error"] in ("unsupported_grant_type", "invalid_request")


async def test_the_token_endpoint_takes_a_form_only(http: httpx.AsyncClient, runtime: Runtime) -> None:
    client = await oauth_clients.create_client(runtime, "labo json", "system/*.read")
    response = await http.post(
        "/oauth/token",
        json={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret),
    )
    assert response.status_code == 415
    assert "x-www-form-urlencoded" in response.json()["error_description"]


async def test_a_narrower_scope_is_granted_as_asked(http: httpx.AsyncClient, runtime: Runtime) -> None:
    """A feed registered for everything asks for less, in either syntax, and gets exactly that."""
    client = await oauth_clients.create_client(runtime, "labo narrow", "system/*.cruds")
    for asked in ("system/Patient.read", "system/Observation.rs", "system/Patient.rs system/Observation.c"):
        response = await _token(http, client, scope=asked)
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == asked


async def test_a_wider_scope_is_cut_to_what_was_registered(http: httpx.AsyncClient, runtime: Runtime) -> None:
    """Asking beyond the registration grants only the covered part; asking only for what is not covered is
    invalid_scope, and the token cannot do more than registered."""
    client = await oauth_clients.create_client(runtime, "labo wide", "system/Patient.read")
    partial = await _token(http, client, scope="system/Patient.read system/Observation.read")
    assert partial.status_code == 200, partial.text
    assert partial.json()["scope"] == "system/Patient.read"
    token = partial.json()["access_token"]
    assert (await _as(http, token).get("/Observation")).status_code == 403

    nothing = await _token(http, client, scope="system/*.write")
    assert nothing.status_code == 400, nothing.text
    assert nothing.json()["error"] == "invalid_scope"
    assert "access_token" not in nothing.json()


# --- scopes enforced per type and interaction ---------------------------------------------------------------


@pytest.fixture(scope="module")
async def ids(fhir: httpx.AsyncClient) -> dict[str, str]:
    """A Patient and an Observation about them, made by a feed with every scope."""
    pat = await fhir.post("/Patient", json=patient(), headers=FHIR_JSON)
    obs = await fhir.post("/Observation", json=observation(pat.json()["id"]), headers=FHIR_JSON)
    assert obs.status_code == 201, obs.text
    return {"Patient": pat.json()["id"], "Observation": obs.json()["id"]}


async def _can(client: httpx.AsyncClient, ids: dict[str, str]) -> dict[str, int]:
    """What a token may do, interaction by interaction: the statuses the server answers."""
    pid, oid = ids["Patient"], ids["Observation"]
    current = (await client.get(f"/Patient/{pid}")).json()
    return {
        "Patient.read": (await client.get(f"/Patient/{pid}")).status_code,
        "Patient.search": (await client.get("/Patient", params={"_id": pid})).status_code,
        "Patient.history": (await client.get(f"/Patient/{pid}/_history")).status_code,
        "Patient.create": (await client.post("/Patient", json=patient(), headers=FHIR_JSON)).status_code,
        "Patient.update": (await client.put(f"/Patient/{pid}", json=current, headers=FHIR_JSON)).status_code
        if current.get("resourceType") == "Patient"
        else 403,
        "Observation.read": (await client.get(f"/Observation/{oid}")).status_code,
        "Observation.search": (await client.get("/Observation", params={"_id": oid})).status_code,
        "Observation.create": (
            await client.post("/Observation", json=observation(pid), headers=FHIR_JSON)
        ).status_code,
    }


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        (
            "system/*.read",
            {"Patient.read", "Patient.search", "Patient.history", "Observation.read", "Observation.search"},
        ),
        (
            "system/Patient.*",
            {"Patient.read", "Patient.search", "Patient.history", "Patient.create", "Patient.update"},
        ),
        (
            "system/*.cruds",
            {
                "Patient.read",
                "Patient.search",
                "Patient.history",
                "Patient.create",
                "Patient.update",
                "Observation.read",
                "Observation.search",
                "Observation.create",
            },
        ),
        ("system/Patient.rs", {"Patient.read", "Patient.search", "Patient.history"}),
        ("system/Observation.rs", {"Observation.read", "Observation.search"}),
        ("system/Observation.cs", {"Observation.search", "Observation.create"}),
    ],
)
async def test_scopes_are_enforced_per_type_and_interaction(
    http: httpx.AsyncClient, token_for: TokenFactory, ids: dict[str, str], scope: str, allowed: set[str]
) -> None:
    """Each token may do exactly what its scope names: the rest is 403."""
    client = _as(http, await token_for(scope))
    statuses = await _can(client, ids)
    assert {k for k, v in statuses.items() if v in (200, 201)} == allowed, statuses
    assert {v for k, v in statuses.items() if k not in allowed} <= {403}, statuses


async def test_a_refusal_says_which_interaction_and_type(
    http: httpx.AsyncClient, token_for: TokenFactory, ids: dict[str, str]
) -> None:
    client = _as(http, await token_for("system/Patient.rs"))
    response = await client.get(f"/Observation/{ids['Observation']}")
    assert response.status_code == 403
    assert "read Observation" in response.json()["issue"][0]["diagnostics"]
    create = await client.post("/Patient", json=patient(), headers=FHIR_JSON)
    assert create.status_code == 403
    assert "create Patient" in create.json()["issue"][0]["diagnostics"]


async def test_included_resources_the_token_may_not_read_are_left_out(
    http: httpx.AsyncClient, token_for: TokenFactory, ids: dict[str, str]
) -> None:
    """An Observation-only token asks to include the subject: it gets the Observation, not the Patient."""
    client = _as(http, await token_for("system/Observation.rs"))
    response = await client.get(
        "/Observation", params={"_id": ids["Observation"], "_include": "Observation:subject"}
    )
    assert response.status_code == 200, response.text
    kinds = [e["resource"]["resourceType"] for e in response.json()["entry"]]
    assert kinds == ["Observation"]
    everything = _as(http, await token_for("system/*.read"))
    both = await everything.get(
        "/Observation", params={"_id": ids["Observation"], "_include": "Observation:subject"}
    )
    assert [e["resource"]["resourceType"] for e in both.json()["entry"]] == ["Observation", "Patient"]


async def test_a_transaction_entry_outside_the_scope_is_403(
    http: httpx.AsyncClient, token_for: TokenFactory, ids: dict[str, str]
) -> None:
    client = _as(http, await token_for("system/Patient.cruds"))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"resource": observation(ids["Patient"]), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    response = await client.post("", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 403, response.text
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]


# --- discovery and the open door ------------------------------------------------------------------------------


async def test_smart_configuration_points_to_the_token_endpoint(http: httpx.AsyncClient) -> None:
    response = await http.get("/.well-known/smart-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"] == f"{BASE}/oauth/token"
    assert "client_credentials" in config["grant_types_supported"]
    assert set(config["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    }
    assert "system/*.read" in config["scopes_supported"]


async def test_metadata_is_open_and_tells_the_truth(http: httpx.AsyncClient) -> None:
    """Without a token, the CapabilityStatement lists every supported type with its search parameters and
    interactions (AuditEvent read-only), and names the SMART token endpoint."""
    response = await http.get("/fhir/metadata")
    assert response.status_code == 200, response.text
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    by_type = {r["type"]: r for r in rest["resource"]}
    assert set(by_type) == set(RESOURCE_TYPES)
    for rtype, resource in by_type.items():
        names = {p["name"] for p in resource["searchParam"]}
        assert set(params_for(rtype)) | {"_id", "_lastUpdated"} <= names, rtype
        assert resource["updateCreate"] is False
    assert {"identifier", "birthdate", "family", "given", "name"} <= {
        p["name"] for p in by_type["Patient"]["searchParam"]
    }
    codes = {i["code"] for i in by_type["AuditEvent"]["interaction"]}
    assert "read" in codes and "search-type" in codes and not codes & {"create", "update", "delete"}
    assert {"create", "update", "delete", "read", "vread"} <= {
        i["code"] for i in by_type["Patient"]["interaction"]
    }
    security = rest["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == f"{BASE}/oauth/token"
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/fhir/Patient"),
        ("GET", "/fhir/Patient/" + "a" * 48),
        ("GET", "/fhir/Patient/" + "a" * 48 + "/_history"),
        ("GET", "/fhir/Patient/" + "a" * 48 + "/_history/1"),
        ("GET", "/fhir/Patient/_history"),
        ("POST", "/fhir/Patient"),
        ("POST", "/fhir/Patient/_search"),
        ("PUT", "/fhir/Patient/" + "a" * 48),
        ("PATCH", "/fhir/Patient/" + "a" * 48),
        ("DELETE", "/fhir/Patient/" + "a" * 48),
        ("POST", "/fhir"),
        ("GET", "/fhir/Nope"),
    ],
)
async def test_everything_else_under_fhir_needs_a_token(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await http.request(method, path, json=patient(), headers=FHIR_JSON)
    assert response.status_code == 401, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_conditional_reference_needs_search_rights_on_its_target(
    http: httpx.AsyncClient, token_for: TokenFactory, ids: dict[str, str]
) -> None:
    """A feed that may create Observations but not search Patients cannot find a Patient by INS through a
    conditional reference: 403, not a validation error, and nothing about the Patient is revealed."""
    client = _as(http, await token_for("system/Observation.c"))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": dict(
                    observation(ids["Patient"]), subject={"reference": "Patient?identifier=urn:x|1"}
                ),
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    response = await client.post("", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 403, response.text
    assert "search Patient" in response.json()["issue"][0]["diagnostics"]


async def test_a_rejected_token_is_named_in_www_authenticate(http: httpx.AsyncClient) -> None:
    """RFC 6750 section 3.1: a presented but unusable token gets error="invalid_token"; no token at all gets
    the bare challenge."""
    bad = await http.get("/fhir/Patient", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    none = await http.get("/fhir/Patient")
    assert none.status_code == 401
    assert "error=" not in none.headers["www-authenticate"]


async def test_system_tokens_never_outlive_five_minutes(runtime: Runtime) -> None:
    """Even a deployment configured with an hour-long lifetime issues system tokens of 300 s at most."""
    settings = runtime.settings.model_copy(update={"system_token_lifetime": 3600})
    longer = dataclasses.replace(runtime, settings=settings, embedded=None)
    client = await oauth_clients.create_client(runtime, "labo long", "system/*.read")
    app = create_app(runtime=longer)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        response = await _token(http, client)
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == 300
    expires = await runtime.db.fetchval(
        "test_expiry",
        "SELECT expires_at - now() FROM oauth_token WHERE token_hash = $1",
        hashlib.sha256(response.json()["access_token"].encode()).digest(),
    )
    assert expires.total_seconds() <= 300
