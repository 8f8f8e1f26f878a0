"""Signing in through the pages, as a person does with a browser: password then a code, sessions listed and
ended, anti-forgery tokens, cookies (SECURITY V2, V3, V4 4.2.2)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from espace_sante.people import accounts, sessions
from espace_sante.runtime import Runtime
from tests.accounts.helpers import (
    browser,
    csrf_of,
    new_person,
    next_code,
    sign_in,
    trace_actions,
)


async def test_a_holder_signs_in_with_password_and_code_and_sees_her_session(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """Jeanne types her login and password, then the code of her authenticator app; she lands on her account
    security page, which lists this session; the trace has her sign-in, written with the session."""
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        done = await sign_in(client, jeanne)
        assert done.status_code == 303 and done.headers["location"] == "/compte/securite"
        cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith("__Host-es_session="))
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"secure", "httponly", "path"} <= attributes
        assert (
            "samesite=lax" in cookie.lower() and "path=/" in cookie.lower() and "domain" not in cookie.lower()
        )
        page = await client.get("/compte/securite")
        assert page.status_code == 200
        assert "cette session" in page.text and jeanne.login in page.text
        assert "substantiel" in page.text
        assert page.headers["cache-control"] == "no-store"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    actions = [a for a, *_ in await trace_actions(runtime, jeanne.actor_id)]
    assert actions[-1] == "signin:success"


async def test_a_session_row_stores_the_level_and_method_and_gives_the_holder_actor(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        secret = client.cookies.get("__Host-es_session")
    assert secret
    session = await sessions.current(runtime, secret)
    assert session is not None
    assert (session.acr, session.method, session.kind) == ("eidas2", "password+totp", "holder")
    actor = await sessions.actor_of(runtime, session)
    assert (actor.kind, actor.id, actor.acr) == ("holder", jeanne.actor_id, "eidas2")
    assert actor.scopes.allows("patient", "Observation", "r")
    async with runtime.db.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM web_session WHERE secret_hash = $1", secret.encode()
        )
    assert stored == 0  # only a digest of the secret is stored


async def test_wrong_password_says_so_in_french_without_telling_whether_the_login_exists(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        page = await client.get("/connexion")
        wrong = await client.post(
            "/connexion",
            data={"csrf": csrf_of(page.text), "login": jeanne.login, "password": "pas le bon mot"},
        )
        unknown = await client.post(
            "/connexion",
            data={"csrf": csrf_of(page.text), "login": "personne@exemple.fr", "password": "x" * 20},
        )
    assert wrong.status_code == unknown.status_code == 400
    assert "Identifiant ou mot de passe incorrect" in wrong.text
    assert "Identifiant ou mot de passe incorrect" in unknown.text
    assert jeanne.login in wrong.text  # the login stays filled in, escaped
    failures = await trace_actions(runtime, jeanne.actor_id)
    assert failures[-1][:2] == ("signin:failure", "4") and failures[-1][3] == "wrong secret"


async def test_a_password_alone_never_signs_a_holder_in(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """An account with a password but no second factor cannot sign in with it: no session is opened."""
    paul = await new_person(runtime, fhir, with_totp=False)
    async with browser(app) as client:
        page = await client.get("/connexion")
        answer = await client.post(
            "/connexion", data={"csrf": csrf_of(page.text), "login": paul.login, "password": paul.password}
        )
        assert answer.status_code == 400
        assert "clé d'accès" in answer.text
        assert "__Host-es_session" not in client.cookies and "__Host-es_flow" not in client.cookies
        assert (await client.get("/compte/securite")).status_code == 303


async def test_a_post_without_its_anti_forgery_token_is_refused(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """Sign-in forms (signed double-submit) and signed-in forms (synchronizer token) both refuse a POST that
    lacks the token, carries another browser's, or comes from another site."""
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client, browser(app) as other:
        page = await client.get("/connexion")
        token = csrf_of(page.text)
        bare = await client.post("/connexion", data={"login": jeanne.login, "password": jeanne.password})
        assert bare.status_code == 403 and "formulaire a expiré" in bare.text
        await other.get("/connexion")
        foreign = await other.post(
            "/connexion", data={"csrf": token, "login": jeanne.login, "password": jeanne.password}
        )
        assert foreign.status_code == 403  # the token is bound to the first browser's cookie
        cross = await client.post(
            "/connexion",
            data={"csrf": token, "login": jeanne.login, "password": jeanne.password},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403
        assert (await sign_in(client, jeanne)).status_code == 303
        for path in (
            "/deconnexion",
            "/compte/sessions/fermer-toutes",
            "/compte/codes-secours",
            "/compte/totp",
        ):
            refused = await client.post(path, data={})
            assert refused.status_code == 403, path
            wrong = await client.post(path, data={"csrf": token})
            assert wrong.status_code == 403, path
        json_refused = await client.post("/compte/cle/options", json={})
        assert json_refused.status_code == 403
        assert (await client.get("/compte/securite")).status_code == 200  # still signed in


async def test_sign_out_kills_the_server_session_and_the_old_cookie_opens_nothing(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        old = client.cookies.get("__Host-es_session")
        page = await client.get("/compte/securite")
        out = await client.post("/deconnexion", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/connexion?message=fin"
    assert old and await sessions.current(runtime, old) is None
    async with browser(app) as replay:
        replay.cookies.set("__Host-es_session", old, domain="127.0.0.1")
        again = await replay.get("/compte/securite")
        assert again.status_code == 303 and again.headers["location"].startswith("/connexion?next=")
    actions = [a for a, *_ in await trace_actions(runtime, jeanne.actor_id)]
    assert actions[-1] == "session:end"


async def test_sessions_are_listed_one_is_closed_then_all_and_old_cookies_fail(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """Jeanne signed in on her phone and her computer. From the computer she closes the phone's session, then
    signs in again on the phone and signs out everywhere: neither cookie opens anything afterwards."""
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as phone, browser(app) as computer:
        phone.headers["user-agent"] = "Mozilla/5.0 (Linux; Android 14) Firefox/130.0"
        computer.headers["user-agent"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"
        await sign_in(phone, jeanne)
        await sign_in(computer, jeanne)
        page = await computer.get("/compte/securite")
        assert "Firefox sur Android" in page.text and "Chrome sur Linux" in page.text
        phone_secret = phone.cookies.get("__Host-es_session")
        phone_session = await sessions.current(runtime, phone_secret or "")
        assert phone_session is not None
        closed = await computer.post(
            f"/compte/sessions/{phone_session.session_id}/fermer", data={"csrf": csrf_of(page.text)}
        )
        assert closed.status_code == 303
        assert (await phone.get("/compte/securite")).status_code == 303
        await sign_in(phone, jeanne)
        everywhere_page = await phone.get("/compte/securite")
        old_phone, old_computer = (
            phone.cookies.get("__Host-es_session"),
            computer.cookies.get("__Host-es_session"),
        )
        gone = await phone.post(
            "/compte/sessions/fermer-toutes", data={"csrf": csrf_of(everywhere_page.text)}
        )
        assert gone.status_code == 303
    for old in (old_phone, old_computer):
        async with browser(app) as replay:
            replay.cookies.set("__Host-es_session", old or "", domain="127.0.0.1")
            assert (await replay.get("/compte/securite")).status_code == 303
    actions = [a for a, *_ in await trace_actions(runtime, jeanne.actor_id)]
    assert "session:revoke" in actions


async def test_a_session_of_another_account_cannot_be_closed(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne, paul = await new_person(runtime, fhir), await new_person(runtime, fhir)
    async with browser(app) as mine, browser(app) as his:
        await sign_in(mine, jeanne)
        await sign_in(his, paul)
        his_session = await sessions.current(runtime, his.cookies.get("__Host-es_session") or "")
        assert his_session is not None
        page = await mine.get("/compte/securite")
        attempt = await mine.post(
            f"/compte/sessions/{his_session.session_id}/fermer", data={"csrf": csrf_of(page.text)}
        )
        assert attempt.status_code == 404 and "Session inconnue" in attempt.text
        bad = await mine.post("/compte/sessions/pas-un-uuid/fermer", data={"csrf": csrf_of(page.text)})
        assert bad.status_code == 404
        assert (await his.get("/compte/securite")).status_code == 200


async def test_idle_and_absolute_timeouts_end_a_session(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        secret = client.cookies.get("__Host-es_session") or ""
        session = await sessions.current(runtime, secret)
        assert session is not None
        idle = runtime.settings.session_idle_seconds
        async with runtime.db.pool.acquire() as conn:
            await conn.execute(
                "UPDATE web_session SET last_seen_at = now() - make_interval(secs => $2) WHERE session_id = $1",
                session.session_id,
                idle + 5,
            )
        assert await sessions.current(runtime, secret) is None
        assert (await client.get("/compte/securite")).status_code == 303
        await sign_in(client, jeanne)
        secret = client.cookies.get("__Host-es_session") or ""
        session = await sessions.current(runtime, secret)
        assert session is not None
        async with runtime.db.pool.acquire() as conn:
            await conn.execute(
                "UPDATE web_session SET expires_at = now() - interval '1 second' WHERE session_id = $1",
                session.session_id,
            )
        assert await sessions.current(runtime, secret) is None


async def test_a_recovery_code_signs_in_once_and_a_notice_is_kept_in_the_outbox(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir, email="jeanne.martin@exemple.fr")
    code = jeanne.recovery_codes[3]
    async with browser(app) as client:
        done = await sign_in(client, jeanne, code=code.lower().replace("-", " "))
        assert done.status_code == 303
    async with browser(app) as client:
        again = await sign_in(client, jeanne, code=code)
        assert again.status_code == 400 and "Code incorrect" in again.text
    async with runtime.db.pool.acquire() as conn:
        mails = await conn.fetch(
            "SELECT subject, body FROM outbox WHERE recipient = $1 ORDER BY created_at",
            "jeanne.martin@exemple.fr",
        )
    assert len(mails) == 1
    assert "code de secours a été utilisé" in mails[0]["body"]
    assert jeanne.actor_id not in mails[0]["body"]
    methods = [d for a, _, d, _ in await trace_actions(runtime, jeanne.actor_id) if a == "signin:success"]
    assert methods[-1].startswith("password+recovery")


async def test_a_totp_code_works_once(runtime: Runtime, fhir: httpx.AsyncClient, app: Any) -> None:
    address = f"jeanne-{secrets.token_hex(4)}@exemple.fr"
    jeanne = await new_person(runtime, fhir, email=address)
    code = next_code(jeanne.totp_secret)
    async with browser(app) as client:
        assert (await sign_in(client, jeanne, code=code)).status_code == 303
    async with browser(app) as thief:
        replay = await sign_in(thief, jeanne, code=code)
        assert replay.status_code == 400 and "déjà servi" in replay.text
        assert "__Host-es_session" not in thief.cookies
    failures = [b for a, _, _, b in await trace_actions(runtime, jeanne.actor_id) if a == "signin:failure"]
    assert failures[-1] == "replayed code"
    # SECURITY V2 2.8.4: the replay is also told to the person (their password is known to someone).
    async with runtime.db.pool.acquire() as conn:
        mails = await conn.fetch("SELECT body FROM outbox WHERE recipient = $1", address)
    assert len(mails) == 1 and "déjà utilisé" in mails[0]["body"]


async def test_the_security_page_needs_a_session_and_sign_in_comes_back_to_it(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        away = await client.get("/compte/securite")
        assert away.status_code == 303 and away.headers["location"] == "/connexion?next=/compte/securite"
        page = await client.get(away.headers["location"])
        assert 'name="next" value="/compte/securite"' in page.text
        first = await client.post(
            "/connexion",
            data={
                "csrf": csrf_of(page.text),
                "login": jeanne.login.upper(),
                "password": jeanne.password,
                "next": "/compte/securite",
            },
        )
        assert first.status_code == 303  # the login is case-insensitive
        form = await client.get("/connexion/code")
        done = await client.post(
            "/connexion/code", data={"csrf": csrf_of(form.text), "code": next_code(jeanne.totp_secret)}
        )
        assert done.headers["location"] == "/compte/securite"


async def test_next_never_leads_to_another_site(runtime: Runtime, fhir: httpx.AsyncClient, app: Any) -> None:
    jeanne = await new_person(runtime, fhir)
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        async with browser(app) as client:
            page = await client.get("/connexion", params={"next": evil})
            assert 'name="next" value=""' in page.text
            first = await client.post(
                "/connexion",
                data={
                    "csrf": csrf_of(page.text),
                    "login": jeanne.login,
                    "password": jeanne.password,
                    "next": evil,
                },
            )
            assert first.status_code == 303
            form = await client.get("/connexion/code")
            done = await client.post(
                "/connexion/code", data={"csrf": csrf_of(form.text), "code": next_code(jeanne.totp_secret)}
            )
            assert done.headers["location"] == "/compte/securite"
        break  # one sign-in per code step is enough to show the form path; the rest check safe_next directly
    from espace_sante.web.deps import safe_next

    for evil in (
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
        "/a\r\nb",
    ):
        assert safe_next(evil) == ""
    assert safe_next("/oauth/authorize?client_id=x&state=y") == "/oauth/authorize?client_id=x&state=y"


async def test_bad_input_gets_a_french_message_never_a_500(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    async with browser(app) as client:
        page = await client.get("/connexion")
        token = csrf_of(page.text)
        cases: list[dict[str, Any]] = [
            {"data": {"csrf": token}},
            {"data": {"csrf": token, "login": "x" * 5000, "password": "y" * 100_000}},
            {"data": {"csrf": token, "login": "\x00\x01", "password": "\u202e"}},
            {
                "content": b"\xff\xfe not a form",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}},
        ]
        for case in cases:
            answer = await client.post("/connexion", **case)
            assert answer.status_code in (400, 403), answer.text
            assert "<html" in answer.text
        code = await client.get("/connexion/code")
        assert code.status_code == 303 and code.headers["location"] == "/connexion?message=expire"
        for body in (b"not json", b"[]", b'{"credential": "x"}', b'{"credential": {"response": {}}}'):
            answer = await client.post(
                "/connexion/cle",
                content=body,
                headers={"X-CSRF-Token": token, "content-type": "application/json"},
            )
            assert answer.status_code == 400 and "clé d'accès" in answer.json()["message"]


async def test_a_disabled_account_cannot_sign_in_and_its_sessions_end(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        await accounts.disable(runtime, jeanne.login)
        assert (await client.get("/compte/securite")).status_code == 303
        page = await client.get("/connexion")
        refused = await client.post(
            "/connexion",
            data={"csrf": csrf_of(page.text), "login": jeanne.login, "password": jeanne.password},
        )
        assert refused.status_code == 400 and "Identifiant ou mot de passe incorrect" in refused.text
