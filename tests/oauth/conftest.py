"""The people, apps and software of the OAuth stories: a holder with a Patient and an observation, a
professional in the directory, clients registered through the real services, and signing keys."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from espace_sante.access.actors import Actor
from espace_sante.access.scopes import Scopes
from espace_sante.app import create_app
from espace_sante.context import Context
from espace_sante.oauth import authorize as smart
from espace_sante.oauth import clients as oauth_clients
from espace_sante.people import actors as people
from espace_sante.runtime import Runtime
from tests.factories import BASE, FHIR_JSON, new_nir, new_professional, patient

TOKEN_URL = f"{BASE}/oauth/token"
FHIR_BASE = f"{BASE}/fhir"
G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
APP_REDIRECT = "https://app.example.org/callback"
SOFTWARE_REDIRECT = "https://cabinet.example.org/oauth/retour"


@dataclass(frozen=True)
class Holder:
    nir: str
    patient_id: str
    observation_id: str


@dataclass(frozen=True)
class Professional:
    rpps: str
    practitioner_id: str


async def make_holder(fhir: httpx.AsyncClient) -> Holder:
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    obs = await fhir.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Poids"},
            "subject": {"reference": f"Patient/{pid}"},
        },
        headers=FHIR_JSON,
    )
    assert obs.status_code == 201, obs.text
    return Holder(nir, pid, obs.json()["id"])


async def make_professional(fhir: httpx.AsyncClient) -> Professional:
    return Professional(*await new_professional(fhir))


@pytest.fixture
async def holder(fhir: httpx.AsyncClient) -> Holder:
    return await make_holder(fhir)


@pytest.fixture
async def professional(fhir: httpx.AsyncClient) -> Professional:
    return await make_professional(fhir)


async def person(rt: Runtime, kind: str, ident: str, acr: str = "eidas2") -> Actor:
    assert kind in ("holder", "practitioner")
    return await people.actor_for(rt, kind, ident, scopes=Scopes.none(), acr=acr)  # type: ignore[arg-type]


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, smart.s256(verifier)


def authorize_params(
    client_id: str,
    challenge: str | None,
    *,
    redirect_uri: str = APP_REDIRECT,
    scope: str = "launch/patient patient/*.rs offline_access",
    state: str = "etat-123",
    method: str | None = "S256",
) -> list[tuple[str, str]]:
    params = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scope),
        ("state", state),
        ("aud", FHIR_BASE),
    ]
    if challenge is not None:
        params.append(("code_challenge", challenge))
    if method is not None:
        params.append(("code_challenge_method", method))
    return params


async def code_for(
    rt: Runtime, actor: Actor, params: list[tuple[str, str]], *, consented: bool = True
) -> tuple[str, str]:
    """The person approves the request: returns (code, redirect location)."""
    request = await smart.validate(rt, params)
    location = await smart.approve(Context(rt, actor), request, consented=consented)
    query = dict(httpx.URL(location).params)
    return query["code"], location


async def exchange(
    http: httpx.AsyncClient,
    client: oauth_clients.RegisteredClient,
    code: str,
    verifier: str,
    redirect_uri: str = APP_REDIRECT,
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    auth = None
    if client.client_secret is None:
        form["client_id"] = client.client_id
    else:
        auth = (client.client_id, client.client_secret)
    return await http.post("/oauth/token", data=form, auth=auth)


async def refresh(
    http: httpx.AsyncClient, client: oauth_clients.RegisteredClient, token: str
) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token}
    if client.client_secret is None:
        form["client_id"] = client.client_id
        return await http.post("/oauth/token", data=form)
    return await http.post("/oauth/token", data=form, auth=(client.client_id, client.client_secret))


def bearer(http: httpx.AsyncClient, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=http._transport,
        base_url=FHIR_BASE,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
    )


# --- keys and assertions -------------------------------------------------------------------------------------


def rsa_key(kid: str = "rsa-1") -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid})


def ec_key(kid: str = "ec-1") -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": kid})


def jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def assertion(
    key: RSAKey | ECKey,
    client_id: str,
    *,
    alg: str | None = None,
    aud: str = TOKEN_URL,
    exp_in: int = 240,
    jti: str | None = None,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    alg = alg or ("RS384" if isinstance(key, RSAKey) else "ES384")
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + exp_in,
        "iat": now,
        "jti": jti or str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode(
        {"alg": alg, "kid": key.kid, "typ": "JWT", **(header or {})}, body, key, algorithms=[alg]
    )


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token built by hand (alg none, HMAC...): what a forger sends."""

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    return ".".join((part(json.dumps(header).encode()), part(json.dumps(claims).encode()), part(signature)))


def backend_form(token: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": token,
        **extra,
    }


# --- a small HTTPS-less key server on loopback (what a client's jwks_uri would serve) ---------------------------


class KeyServer:
    """Serves a JWKS on 127.0.0.1 and counts the requests it gets (a listener that must stay silent)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                data = json.dumps(outer.body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/jwks.json"

    def __enter__(self) -> KeyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    with KeyServer({"keys": []}) as server:
        yield server


@pytest.fixture
async def loopback(runtime: Runtime) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """The same runtime with outbound loopback fetches allowed (development setting), and an app on it."""
    settings = runtime.settings.model_copy(update={"outbound_allow_loopback": True})
    rt = dataclasses.replace(runtime, settings=settings, embedded=None)
    app = create_app(runtime=rt)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield rt, client


async def refused_soon(client: httpx.AsyncClient, path: str, within: float = 3.0) -> bool:
    """Whether `path` answers 401 within `within` seconds: a revocation reaches each process's token cache by
    a PostgreSQL notification at commit, delivered asynchronously (as on any other process)."""
    import asyncio

    deadline = time.monotonic() + within
    while True:
        if (await client.get(path)).status_code == 401:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
