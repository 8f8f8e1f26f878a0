"""From a national identifier to an `Actor`: the INS of a holder or a legal representative, the RPPS of a
health professional, an operator's login. Sign-in (sessions, federation) and tokens all build actors here, so
a professional's profession and organisation come from the directory in one place."""

from __future__ import annotations

from typing import Any

import orjson

from espace_sante.access.actors import DIRECTORY, Actor, ActorKind
from espace_sante.access.matrix import PROFESSION_LABELS
from espace_sante.access.policy import decide
from espace_sante.access.scopes import Scopes
from espace_sante.errors import BadRequest, NotFound
from espace_sante.fhir.identifiers import IdentifierError, validate_nir, validate_rpps
from espace_sante.runtime import Runtime
from espace_sante.storage import people as store
from espace_sante.storage import resources
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE

PERSON_KINDS: tuple[ActorKind, ...] = ("holder", "representative", "practitioner", "operator")


def parse_actor(text: str) -> tuple[ActorKind, str]:
    """`KIND:ID` as the CLI and tests write it (`holder:<INS>`, `practitioner:<RPPS>`, `operator:<login>`)."""
    kind, sep, ident = text.partition(":")
    if not sep or kind not in PERSON_KINDS or not ident:
        raise BadRequest(
            f"acteur invalide / invalid actor {text!r}: attendu / expected "
            "holder:<INS>, representative:<INS>, practitioner:<RPPS> ou operator:<login>"
        )
    return kind, ident


async def actor_for(
    rt: Runtime,
    kind: ActorKind,
    ident: str,
    *,
    scopes: Scopes,
    acr: str = "",
    via: str = "",
    subject: str = "",
) -> Actor:
    """The actor `kind:ident`, who must exist: a holder's or a representative's Patient (by INS), a
    professional's directory Practitioner (by RPPS), an operator. NotFound otherwise."""
    return await rt.db.read("people_actor", _actor_in, rt, kind, ident, scopes, acr, via, subject)


async def _actor_in(
    conn: Conn, rt: Runtime, kind: ActorKind, ident: str, scopes: Scopes, acr: str, via: str, subject: str
) -> Actor:
    if kind in ("holder", "representative"):
        try:
            validate_nir(ident)
        except IdentifierError as exc:
            raise BadRequest(f"INS invalide / invalid INS: {exc}") from exc
        if not await store.known_person(conn, ident):
            raise NotFound(f"aucun patient avec cet INS / no patient with this INS: {ident}")
        return Actor(kind, ident, scopes, "", subject=subject, via=via, acr=acr)
    if kind == "practitioner":
        try:
            validate_rpps(ident)
        except IdentifierError as exc:
            raise BadRequest(f"RPPS invalide / invalid RPPS: {exc}") from exc
        found = await store.practitioner_by_rpps(conn, ident)
        if found is None:
            raise NotFound(f"aucun professionnel avec ce RPPS / no practitioner with this RPPS: {ident}")
        name = await _practitioner_name(conn, rt, found.practitioner_id)
        label = PROFESSION_LABELS.get(found.profession, "")
        display = f"{name}, {label.lower()}" if label else name
        return Actor(
            "practitioner",
            ident,
            scopes,
            display,
            via=via,
            acr=acr,
            profession=found.profession,
            specialty=found.specialty,
            practitioner_id=found.practitioner_id,
            organisation=found.organisation,
        )
    if kind == "operator":
        operator = await store.operator_display(conn, ident)
        if operator is None:
            raise NotFound(f"aucun opérateur / no operator: {ident}")
        return Actor("operator", ident, Scopes.none(), operator, via=via, acr=acr)
    raise BadRequest(f"type d'acteur inconnu / unknown actor kind: {kind}")


async def practitioner_display(conn: Conn, rt: Runtime, rpps: str) -> str:
    """ "Dr Claire Lefèvre, médecin" for an RPPS, "" when the directory does not know it."""
    found = await store.practitioner_by_rpps(conn, rpps)
    if found is None:
        return ""
    name = await _practitioner_name(conn, rt, found.practitioner_id)
    label = PROFESSION_LABELS.get(found.profession, "")
    return f"{name}, {label.lower()}" if label else name


async def _practitioner_name(conn: Conn, rt: Runtime, practitioner_id: str) -> str:
    """ "Dr Claire Lefèvre" from the directory entry (directory data, not medical: read by the
    `directory` actor, access/named.py)."""
    decision = decide(DIRECTORY, "read", "Practitioner")
    stored = await resources.read(conn, rt.keys, decision, DIRECTORY_SPACE, "Practitioner", practitioner_id)
    if stored is None or stored.body is None:
        return ""
    body: dict[str, Any] = orjson.loads(stored.body)
    names = body.get("name") or [{}]
    first = names[0] if isinstance(names, list) and names and isinstance(names[0], dict) else {}
    parts = [*first.get("prefix", []), *first.get("given", []), first.get("family", "")]
    return " ".join(p for p in parts if isinstance(p, str) and p).strip()
