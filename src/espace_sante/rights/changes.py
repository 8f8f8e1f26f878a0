"""Changes of rights on a space: the holder's consent, blocks and sharing rules, professionals' care-team
declarations and emergency accesses, the insurer's médecin traitant and legal representatives; and the
holder's "what can this professional see?" preview.

Who may make each change is the policy's answer (access/policy.py `may_change`); each change is written
with its trace record in one transaction (R1111-43), in the space's own chain, so the holder reads it in
their trace in plain words."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from espace_sante import clock
from espace_sante.access import matrix as habilitation
from espace_sante.access.actors import REGISTRY
from espace_sante.access.policy import BASES, Change, decide, may_change
from espace_sante.access.reasons import Code, words
from espace_sante.access.scopes import Scopes
from espace_sante.context import Context
from espace_sante.errors import BadRequest, Forbidden, NotFound
from espace_sante.fhir import compartment
from espace_sante.fhir.identifiers import IdentifierError, validate_finess, validate_nir, validate_rpps
from espace_sante.fhir.searchquery import parse_search
from espace_sante.fhir.validation import RESOURCE_TYPES
from espace_sante.notifications import kinds
from espace_sante.people import actors as people
from espace_sante.people import stepup
from espace_sante.storage import access as store
from espace_sante.storage import audit as audit_store
from espace_sante.storage import locks, visibility
from espace_sante.storage import notifications as notifications_store
from espace_sante.storage import people as people_store
from espace_sante.storage import search as search_store
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn

GRANTABLE = ("consent", "care_team", "medecin_traitant")
#: The bases the portal offers the holder to end herself: her consent, or her objection to a care-team member
#: (L1110-4); a médecin traitant is changed by declaring another one.
HOLDER_ENDS = ("consent", "care_team")
EMERGENCY_REASONS = ("unable_to_consent", "immediate_risk", "samu_call")
#: Types a preview lists (the directory and the trace are not part of "what they can see of your record").
PREVIEW_TYPES = tuple(
    t
    for t in sorted(RESOURCE_TYPES)
    if t not in ("Practitioner", "PractitionerRole", "Organization", "AuditEvent")
)
PREVIEW_LIMIT = 200


class StrongerSignInRequired(Forbidden):
    """A change of rights needs a stronger sign-in than the session's (403 on the API; the portal sends the
    person to confirm her identity at that level and brings her back to the form)."""

    def __init__(self) -> None:
        super().__init__(
            "connexion renforcée requise (clé d'accès, code à usage unique ou FranceConnect+) / a stronger "
            "sign-in is required for this change"
        )


@dataclass(frozen=True)
class Target:
    space_id: uuid.UUID
    patient_id: str


async def _target(conn: Conn, ctx: Context, patient: str | None, ins: str | None) -> Target:
    """The space a change is about: by Patient id, by INS, or the holder's own. An unknown one is a 404."""
    if ins:
        try:
            validate_nir(ins)
        except IdentifierError as exc:
            raise BadRequest(f"INS invalide / invalid INS: {exc}") from exc
        found = await people_store.patient_by_ins(conn, ins)
        if found is None:
            raise NotFound("dossier introuvable / record not found")
        return Target(found.space_id, found.patient_id)
    if patient:
        space_id = compartment.space_of(patient)
        if space_id is not None and await store.patient_of_space(conn, space_id) == patient:
            return Target(space_id, patient)
        raise NotFound("dossier introuvable / record not found")
    if ctx.actor.kind == "holder":
        own = await people_store.patient_by_ins(conn, ctx.actor.id)
        if own is not None:
            return Target(own.space_id, own.patient_id)
    raise BadRequest("patient ou INS requis / patient or INS required")


async def _allow(conn: Conn, ctx: Context, change: Change, target: Target, who: str = "") -> str:
    facts = await store.facts(conn, ctx.actor, [target.space_id], today=clock.today())
    allowed, reason = may_change(ctx.actor, change, facts[0] if facts else None, who=who)
    if allowed:
        return reason.recorded
    related = bool(facts) and facts[0].relation != "" and ctx.actor.kind in ("holder", "representative")
    if not related and ctx.actor.kind not in ("system", "client"):
        # Someone with no relation to the record (a blocked professional, another holder) learns nothing,
        # not even that the record exists (SECURITY threat model: no hint whether a person has a space).
        raise NotFound("dossier introuvable / record not found")
    if reason.code is Code.STRONGER_SIGNIN:
        raise StrongerSignInRequired()
    raise Forbidden(
        f"changement non autorisé ({words(reason, 'fr')}) / change not allowed ({words(reason, 'en')})"
    )


def _check_who(basis: str, who: str) -> str:
    try:
        if who.startswith("finess:"):
            if basis != "care_team":
                raise BadRequest(
                    "seule une équipe de soins peut désigner un établissement / only a care team names an establishment"
                )
            return "finess:" + validate_finess(who[7:])
        return validate_rpps(who)
    except IdentifierError as exc:
        # Only professionals (RPPS) and establishments (FINESS) can be granted access: an insurer or an
        # employer has neither (L1111-18).
        raise BadRequest(f"professionnel invalide / invalid professional: {exc}") from exc


async def _name(conn: Conn, ctx: Context, who: str) -> str:
    if who.startswith("finess:"):
        return ""
    return await people.practitioner_display(conn, ctx.runtime, who)


async def _trace(conn: Conn, ctx: Context, target: Target, action: str, basis: str, detail: str) -> None:
    await audit_store.append(
        conn,
        target.space_id,
        Record(
            action=action,
            outcome=SUCCESS,
            actor_kind=ctx.actor.kind,
            actor_id=ctx.actor.id,
            actor_display=ctx.actor.display,
            basis=basis,
            entity_type="Patient",
            entity_id=target.patient_id,
            detail=detail,
            request_id=ctx.request_id,
        ),
    )


# --- grants ----------------------------------------------------------------------------------------------


async def grant(
    ctx: Context, *, basis: str, who: str, patient: str | None = None, ins: str | None = None
) -> None:
    if basis not in GRANTABLE:
        raise BadRequest(
            f"base inconnue / unknown basis: {basis} (attendu / expected {', '.join(GRANTABLE)})"
        )
    who = _check_who(basis, who)

    async def run(conn: Conn) -> None:
        target = await _target(conn, ctx, patient, ins)
        reason = await _allow(conn, ctx, basis, target, who)  # type: ignore[arg-type]
        if not who.startswith("finess:") and await people_store.practitioner_by_rpps(conn, who) is None:
            # Access goes to professionals of the national directory only (L1111-18: never an insurer).
            raise BadRequest(
                f"professionnel inconnu de l'annuaire / professional not in the directory: {who}"
            )
        if basis == "medecin_traitant":
            # One médecin traitant at a time: declaring a new one ends the former's basis.
            former = await store.medecin_traitant(conn, target.space_id)
            if former is not None and former != who:
                await store.revoke_basis(conn, target.space_id, former, basis)
                await _trace(
                    conn,
                    ctx,
                    target,
                    "rights:revoke",
                    reason,
                    f"{basis}|{former}|{await _name(conn, ctx, former)}",
                )
        by_person = ctx.actor.kind in ("holder", "representative")
        lifts = by_person or basis == "medecin_traitant"
        if not await store.set_basis(
            conn, target.space_id, who, basis, str(ctx.actor), lifts_objection=lifts
        ):
            # The holder objected to this professional: only she lifts it.
            raise NotFound("dossier introuvable / record not found")
        await _trace(
            conn, ctx, target, "rights:grant", reason, f"{basis}|{who}|{await _name(conn, ctx, who)}"
        )

    await ctx.runtime.db.interaction("rights_grant", run)


async def revoke(
    ctx: Context, *, basis: str, who: str, patient: str | None = None, ins: str | None = None
) -> None:
    """Withdraw a consent, object to a care team member, end a médecin traitant declaration."""
    if basis not in GRANTABLE:
        raise BadRequest(f"base inconnue / unknown basis: {basis}")
    who = _check_who(basis, who)

    async def run(conn: Conn) -> None:
        target = await _target(conn, ctx, patient, ins)
        reason = await _allow(conn, ctx, "revoke", target, who)
        objection = ctx.actor.kind in ("holder", "representative") and basis != "medecin_traitant"
        if not await store.revoke_basis(conn, target.space_id, who, basis, objection=objection):
            raise NotFound("aucun accès de ce type pour ce professionnel / no such access")
        await _trace(
            conn, ctx, target, "rights:revoke", reason, f"{basis}|{who}|{await _name(conn, ctx, who)}"
        )

    await ctx.runtime.db.interaction("rights_revoke", run)


async def set_blocked(
    ctx: Context, *, rpps: str, blocked: bool, patient: str | None = None, ins: str | None = None
) -> None:
    rpps = _check_who("consent", rpps)

    async def run(conn: Conn) -> None:
        target = await _target(conn, ctx, patient, ins)
        reason = await _allow(conn, ctx, "block" if blocked else "unblock", target, rpps)
        if blocked:
            await store.block(conn, target.space_id, rpps)
        elif not await store.unblock(conn, target.space_id, rpps):
            raise NotFound("ce professionnel n'est pas bloqué / this professional is not blocked")
        action = "rights:block" if blocked else "rights:unblock"
        await _trace(conn, ctx, target, action, reason, f"|{rpps}|{await _name(conn, ctx, rpps)}")

    await ctx.runtime.db.interaction("rights_block", run)


async def emergency(
    ctx: Context, *, kind: str, reason: str, patient: str | None = None, ins: str | None = None
) -> datetime:
    """Open a time-limited emergency (or SAMU regulation) access for the signed-in professional (L1111-17 I).
    Whether it lets them read anything is still the policy's answer at each read: the holder may have
    refused emergency access, or blocked them. The holder and the médecin traitant see it in the trace."""
    if kind not in ("emergency", "samu"):
        raise BadRequest("type d'accès invalide / invalid kind: emergency ou/or samu")
    if reason not in EMERGENCY_REASONS:
        raise BadRequest(
            f"motif invalide / invalid reason (attendu / expected {', '.join(EMERGENCY_REASONS)})"
        )
    minutes = ctx.runtime.settings.emergency_access_minutes

    async def run(conn: Conn) -> datetime:
        target = await _target(conn, ctx, patient, ins)
        basis = await _allow(conn, ctx, "emergency", target, ctx.actor.id)
        # After the checks that tell a stranger nothing: a recent proof of identity (SECURITY V3 3.7.1).
        stepup.require(ctx, "emergency")
        ends = datetime.now(UTC) + timedelta(minutes=minutes)
        await store.start_emergency(conn, target.space_id, ctx.actor.id, kind, reason, ends)
        await _trace(conn, ctx, target, "access:emergency", basis, f"{kind}|{reason}|")
        # Who is told (R1111-48): the holder (or a minor's representatives) and the médecin traitant, by the
        # notification recorded with the access (notifications/delivery.py decides the addresses).
        await notifications_store.tell(
            conn,
            notifications_store.NewNotification(
                target.space_id,
                notifications_store.EMERGENCY,
                actor_kind=ctx.actor.kind,
                actor_id=ctx.actor.id,
                actor_display=ctx.actor.display,
            ),
        )
        return ends

    return await ctx.runtime.db.interaction("rights_emergency", run)


async def add_representative(
    ctx: Context,
    *,
    representative_ins: str,
    until: date | None = None,
    patient: str | None = None,
    ins: str | None = None,
) -> None:
    """Record a legal representative of a minor (insurer feed). Rights end at the minor's 18th birthday."""
    try:
        representative_ins = validate_nir(representative_ins)
    except IdentifierError as exc:
        raise BadRequest(f"INS du représentant invalide / invalid representative INS: {exc}") from exc

    async def run(conn: Conn) -> None:
        target = await _target(conn, ctx, patient, ins)
        reason = await _allow(conn, ctx, "representative", target)
        end = until or await _eighteenth_birthday(conn, target)
        if end <= clock.today():
            raise BadRequest("le titulaire est majeur / the holder is an adult")
        await store.add_representative(conn, target.space_id, representative_ins, end)
        await _trace(conn, ctx, target, "rights:representative", reason, f"|{representative_ins}|")

    await ctx.runtime.db.interaction("rights_representative", run)


async def _eighteenth_birthday(conn: Conn, target: Target) -> date:
    # The end of a representative's rights is the registry's date of birth (access/named.py: `registry`).
    born = await people_store.birth_date(
        conn, decide(REGISTRY, "read", "Patient"), target.space_id, target.patient_id
    )
    if born is None:
        raise BadRequest(
            "date de naissance inconnue : précisez la fin des droits / unknown birth date: give `until`"
        )
    try:
        return born.replace(year=born.year + 18)
    except ValueError:  # born on 29 February
        return born.replace(year=born.year + 18, day=28)


# --- the holder's sharing rules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    emergency_refused: bool = False
    samu_refused: bool = False
    masked_in_emergency: bool = False
    shared_sections: tuple[str, ...] | None = None
    matrix_overrides: dict[str, dict[str, list[str]]] | None = None


def _check_settings(s: Settings) -> None:
    matrix = habilitation.default()
    for section in s.shared_sections or ():
        if section not in matrix.sections:
            raise BadRequest(
                f"rubrique inconnue / unknown profile section: {section} (attendu / expected "
                f"{', '.join(sorted(matrix.sections))})"
            )
    for profession, change in (s.matrix_overrides or {}).items():
        if profession not in habilitation.TRE_G15_PROFESSIONS:
            raise BadRequest(f"profession inconnue (TRE_G15) / unknown profession: {profession}")
        for key, items in change.items():
            if key not in ("add", "remove"):
                raise BadRequest(f"clé inconnue / unknown key {key!r}: add ou/or remove")
            unknown = [i for i in items if i not in matrix.categories and i not in matrix.sections]
            if unknown:
                raise BadRequest(f"catégorie ou rubrique inconnue / unknown category or section: {unknown}")


async def save_settings(
    ctx: Context,
    settings: Settings | Callable[[Settings], Settings],
    *,
    patient: str | None = None,
    ins: str | None = None,
) -> None:
    """Save her sharing rules: `settings` as given, or a change of the rules as they are (a function of them),
    made in the transaction that saves them and after every other change of this space's rules has committed:
    two pages saved at once (two representatives) each keep the other's change."""
    if isinstance(settings, Settings):
        _check_settings(settings)

    async def run(conn: Conn) -> None:
        target = await _target(conn, ctx, patient, ins)
        reason = await _allow(conn, ctx, "settings", target)
        await locks.hold_until_commit(conn, f"space-settings:{target.space_id}")
        chosen = settings
        if not isinstance(chosen, Settings):
            chosen = chosen(await _settings_now(conn, ctx, target))
            _check_settings(chosen)
        await store.save_settings(
            conn,
            target.space_id,
            emergency_refused=chosen.emergency_refused,
            samu_refused=chosen.samu_refused,
            masked_in_emergency=chosen.masked_in_emergency,
            shared_sections=chosen.shared_sections,
            matrix_overrides=chosen.matrix_overrides or {},
        )
        await _trace(conn, ctx, target, "rights:settings", reason, "")

    await ctx.runtime.db.interaction("rights_settings", run)


async def _settings_now(conn: Conn, ctx: Context, target: Target) -> Settings:
    """The space's sharing rules as stored (sections None while she follows the matrix's defaults)."""
    facts = (await store.facts(conn, ctx.actor, [target.space_id], today=clock.today()))[0]
    return Settings(
        emergency_refused=facts.emergency_refused,
        samu_refused=facts.samu_refused,
        masked_in_emergency=facts.masked_in_emergency,
        shared_sections=tuple(sorted(facts.shared_sections)) if facts.shared_sections is not None else None,
        matrix_overrides={
            p: {"add": sorted(o.add), "remove": sorted(o.remove)} for p, o in facts.overrides.items()
        },
    )


async def notification_choices(
    ctx: Context, *, patient: str | None = None, ins: str | None = None
) -> dict[str, bool]:
    """Whether she is told of each kind of this space's notifications by e-mail (notifications/kinds.py), her
    own choice or the kind's default; read as her rights are (the holder, a minor's representative)."""

    async def run(conn: Conn) -> dict[str, bool]:
        target = await _target(conn, ctx, patient, ins)
        await _allow(conn, ctx, "preview", target)
        chosen = (await notifications_store.choices(conn, target.space_id, [ctx.actor.id]))[ctx.actor.id]
        return {k.code: kinds.by_email(k.code, chosen) for k in kinds.KINDS}

    return await ctx.runtime.db.read("notification_choices", run)


async def save_notification_choices(
    ctx: Context, by_email: Mapping[str, bool], *, patient: str | None = None, ins: str | None = None
) -> None:
    """Save her own choices of being told by e-mail of this space's notifications, kind by kind (after a
    strong sign-in: see STRONG_CHANGES); a representative's are hers, not the child's nor the other parent's.
    Traced in the space's history like any change of its choices."""
    unknown = sorted(set(by_email) - set(kinds.BY_CODE))
    if unknown:
        raise BadRequest(f"notification inconnue / unknown notification: {', '.join(unknown)}")

    async def run(conn: Conn) -> None:
        target = await _target(conn, ctx, patient, ins)
        reason = await _allow(conn, ctx, "notifications", target)
        await notifications_store.save_choices(conn, target.space_id, ctx.actor.id, by_email)
        chosen = ",".join(f"{k}={'1' if v else '0'}" for k, v in sorted(by_email.items()))
        await _trace(conn, ctx, target, "rights:notifications", reason, chosen)

    await ctx.runtime.db.interaction("notification_choices_save", run)


async def overview(ctx: Context, *, patient: str | None = None, ins: str | None = None) -> dict[str, Any]:
    """Who has access and on what basis, who is blocked, and the sharing rules: for the holder's page (the
    record named by Patient id or by its holder's INS, as a representative's pages name a child's)."""

    async def run(conn: Conn) -> dict[str, Any]:
        target = await _target(conn, ctx, patient, ins)
        await _allow(conn, ctx, "preview", target)
        facts = (await store.facts(conn, ctx.actor, [target.space_id], today=clock.today()))[0]
        matrix = habilitation.default()
        shared = facts.shared_sections
        if shared is None:
            shared = frozenset(s for s in matrix.sections if matrix.shared_by_default(s))
        bases = []
        for row in await store.bases_of(conn, target.space_id):
            bases.append(
                {
                    "who": row["who"],
                    "name": await _name(conn, ctx, row["who"]),
                    "basis": row["basis"],
                    "granted_by": row["granted_by"],
                    "granted_at": row["granted_at"].isoformat(),
                    "active": row["revoked_at"] is None,
                    "holder_ends": row["basis"] in HOLDER_ENDS,
                }
            )
        return {
            "patient": target.patient_id,
            "bases": bases,
            "blocked": [
                {"rpps": r, "name": await _name(conn, ctx, r)}
                for r in await store.blocked_of(conn, target.space_id)
            ],
            "settings": {
                "emergency_refused": facts.emergency_refused,
                "samu_refused": facts.samu_refused,
                "masked_in_emergency": facts.masked_in_emergency,
                "shared_sections": sorted(shared),
                # False: the matrix's default sections, followed as they change (NULL in space_settings).
                "sections_chosen": facts.shared_sections is not None,
                "matrix_overrides": {
                    p: {"add": sorted(o.add), "remove": sorted(o.remove)} for p, o in facts.overrides.items()
                },
            },
        }

    return await ctx.runtime.db.read("rights_overview", run)


# --- "what can this professional see?" --------------------------------------------------------------------


async def preview(
    ctx: Context, *, rpps: str, patient: str | None = None, ins: str | None = None
) -> dict[str, Any]:
    """What the policy would let professional `rpps` read in the holder's space, item by item with the
    reason: the same `decide` and the same SQL as their own requests, run for the holder to see."""
    rpps = _check_who("consent", rpps)
    professional = await people.actor_for(ctx.runtime, "practitioner", rpps, scopes=Scopes.parse("user/*.rs"))

    async def run(conn: Conn) -> dict[str, Any]:
        target = await _target(conn, ctx, patient, ins)
        reason = await _allow(conn, ctx, "preview", target)
        facts = await store.facts(conn, professional, [target.space_id], today=clock.today())
        own_facts = await store.facts(conn, ctx.actor, [target.space_id], today=clock.today())
        items: list[dict[str, Any]] = []
        for rtype in PREVIEW_TYPES:
            decision = decide(professional, "search", rtype, facts)
            if not decision.covers(target.space_id):
                continue
            # What the asker may not see themselves stays out (a result awaiting its announcement, a minor's
            # confidential care): the preview is the professional's answer within the asker's own.
            asker = decide(ctx.actor, "read", rtype, own_facts)
            # The decision covers only the holder's space: the search reaches nothing else.
            request = parse_search(
                rtype,
                [("_count", str(PREVIEW_LIMIT))],
                strict=False,
                default_count=PREVIEW_LIMIT,
                max_count=PREVIEW_LIMIT,
            )
            found, _ = await search_store.page(conn, ctx.runtime.keys, decision, request)
            why = decision.reason_in(target.space_id)
            for stored in found:
                if not await visibility.reaches(conn, asker, target.space_id, rtype, stored.resource_id):
                    continue
                body = orjson.loads(stored.body) if stored.body else {}
                items.append(
                    {
                        "type": rtype,
                        "id": stored.resource_id,
                        "label": _label(body),
                        "reason": words(why),
                        "reason_en": words(why, "en"),
                    }
                )
        await _trace(conn, ctx, target, "rights:preview", reason, f"|{rpps}|{professional.display}")
        bases = sorted(
            (facts[0].bases if facts else frozenset()), key=lambda b: BASES.index(b) if b in BASES else 9
        )
        return {
            "professional": {
                "rpps": rpps,
                "name": professional.display,
                "profession": professional.profession,
            },
            "bases": bases,
            "blocked": bool(facts and facts[0].blocked),
            "items": items,
        }

    return await ctx.runtime.db.interaction("rights_preview", run)


def _label(body: dict[str, Any]) -> str:
    for key in (
        "description",
        "title",
        "code",
        "vaccineCode",
        "type",
        "medicationCodeableConcept",
        "category",
    ):
        value = body.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            if isinstance(value.get("text"), str):
                return str(value["text"])
            for coding in value.get("coding") or ():
                if isinstance(coding, dict) and isinstance(coding.get("display"), str):
                    return str(coding["display"])
    if body.get("resourceType") == "Patient":
        return "identité / identity"
    return str(body.get("resourceType", ""))
