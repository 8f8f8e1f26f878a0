"""« Qui peut voir mon dossier » (PRODUCT §4, L1110-4, L1111-15, L1111-17): who has access to the record the
holder's pages are about (hers, or a child's she represents: web/holder/whose.py), on what basis and since when,
who is blocked, what the emergency rules are, and for each professional « what can they see now? ».

- `GET /mon-espace/acces`: the overview, `rights/changes.overview`, the service `GET /access` answers.
- `GET /mon-espace/acces/apercu?rpps=…`: `rights/changes.preview`, the same decision as `/access/preview`: the
  policy run for that professional, within what she may see herself; the preview is recorded in the trace.
- `GET /mon-espace/acces?cherche=…` finds professionals in the national directory by name or RPPS (a FHIR
  search of Practitioner with their roles, as any client makes it); `POST /mon-espace/acces/accord` gives
  one of them her consent (`rights/changes.grant`, basis `consent`, L1111-15).
- `POST /mon-espace/acces/retirer` (withdraw a consent, object to a care-team member), `…/bloquer`,
  `…/debloquer`, `…/urgence` (the three emergency rules): `rights/changes` `revoke`, `set_blocked`,
  `save_settings`, with the session's anti-forgery token. Each change is confirmed in plain words on the page;
  a session below the level the change needs is sent to confirm her identity (the step-up page) and comes
  back to this page.

Nothing is decided here: the page shows what the services answer, in the page's language."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import orjson
from fastapi import FastAPI, Query, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from espace_sante.access import matrix as habilitation
from espace_sante.access.matrix import PROFESSION_LABELS
from espace_sante.errors import BadRequest
from espace_sante.fhir import valuesets
from espace_sante.fhir.identifiers import RPPS, IdentifierError, validate_rpps
from espace_sante.record import interactions as fhir
from espace_sante.rights import changes
from espace_sante.storage.people import PROFESSION_SYSTEMS, RPPS_SYSTEMS
from espace_sante.web import i18n
from espace_sante.web.deps import same_site
from espace_sante.web.forms import field, see_other
from espace_sante.web.holder import space
from espace_sante.web.holder.acting import Change, act
from espace_sante.web.holder.whose import Whose, holder_whose
from espace_sante.web.portal import PageRefused, portal_router
from espace_sante.web.templating import render

SHARING = "/mon-espace/acces"
PREVIEW = f"{SHARING}/apercu"
WITHDRAW = f"{SHARING}/retirer"
BLOCK = f"{SHARING}/bloquer"
UNBLOCK = f"{SHARING}/debloquer"
EMERGENCY = f"{SHARING}/urgence"
CONSENT = f"{SHARING}/accord"
SECTIONS = f"{SHARING}/profil"
MATRIX = f"{SHARING}/matrice"
#: How many professionals a directory search shows.
FOUND_MAX = 10

router = portal_router(
    not_found=(
        "Professionnel introuvable",
        "Ce professionnel n'a pas accès à ce dossier, ou n'est pas dans l'annuaire.",
        "This professional has no access to this record, or is not in the directory.",
    ),
    link=SHARING,
)


def _basis(code: str) -> str:
    """A basis of access in the page's language, with the article that grants it."""
    _ = i18n.gettext
    return {
        "medecin_traitant": _("médecin traitant (article L1111-15)"),
        "care_team": _("membre de l'équipe de soins qui vous prend en charge (article L1110-4)"),
        "consent": _("votre accord (article L1111-15)"),
        "emergency": _("accès en urgence, limité dans le temps (article L1111-17)"),
        "samu": _("régulation du SAMU, limitée dans le temps (article R1111-48)"),
    }.get(code, code)


def _section_words() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The profile's sections as she chooses them (key: label, the matrix's sections it covers): medical and
    surgical history are one choice, as the matrix gives them one label."""
    _ = i18n.gettext
    return {
        "antecedents": (_("Antécédents médicaux et chirurgicaux"), ("Condition", "Procedure")),
        "allergies": (_("Allergies"), ("AllergyIntolerance",)),
        "traitements": (_("Traitements"), ("MedicationStatement",)),
        "vaccinations": (_("Vaccinations"), ("Immunization",)),
        "mesures": (_("Mesures (poids, tension, glycémie...)"), ("Observation",)),
        "directives": (_("Directives anticipées, don d'organes"), ("Consent",)),
        "contacts": (_("Personnes à prévenir"), ("RelatedPerson",)),
    }


def _category_words() -> dict[str, str]:
    """The document classes of the matrix (TRE_A03 groups, as the matrix names them), in the page's language."""
    _ = i18n.gettext
    return {
        "10": _("Comptes rendus"),
        "11": _("Synthèses"),
        "31": _("Imagerie médicale"),
        "42": _("Prescriptions"),
        "43": _("Dispensations"),
        "44": _("Plans de soins, protocoles de soins"),
        "45": _("Traitements administrés"),
        "52": _("Certificats, déclarations"),
        "60": _("Données de remboursement"),
        "90": _("Documents que vous avez déposés"),
    }


def _group_words() -> dict[str, str]:
    _ = i18n.gettext
    return {
        "medical": _("Médecins, chirurgiens-dentistes, sages-femmes"),
        "pharmacy": _("Pharmaciens"),
        "nursing": _("Infirmiers"),
        "rehabilitation": _(
            "Rééducation (kinésithérapie, orthophonie, orthoptie, ergothérapie, psychomotricité, pédicurie-podologie)"
        ),
        "medical_technology": _(
            "Biologie et imagerie (techniciens de laboratoire, manipulateurs, physiciens médicaux)"
        ),
        "care_support": _("Psychologues, diététiciens"),
        "appliances": _("Appareillage (audioprothésistes, opticiens, orthoprothésistes...)"),
        "no_record_access": _("Assistants, aides-soignants, préparateurs, ambulanciers"),
    }


#: Professions that read no document, whatever she decides: not health professionals the law lets read a
#: record (the matrix's "no_record_access" group).
CLOSED_GROUPS = frozenset({"no_record_access"})


def _groups(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Each profession group of the matrix: what it reads by default, with her adjustments applied."""
    matrix = habilitation.default()
    overrides = settings["matrix_overrides"]
    words, names = _category_words(), _group_words()
    out = []
    for key, (_label, members) in matrix.groups.items():
        if not members:
            continue
        first = members[0]
        default = matrix.by_profession[first].read
        reads = _reads(matrix, overrides, first)
        categories = [(c, words.get(c, c), c in reads, c in default) for c in matrix.categories]
        out.append(
            {
                "key": key,
                "label": names.get(key, _label),
                "reads": ", ".join(words.get(c, c) for c in matrix.categories if c in reads),
                "changed": any(
                    _reads(matrix, overrides, p) != set(matrix.by_profession[p].read) for p in members
                ),
                "adjustable": key not in CLOSED_GROUPS,
                "categories": categories,
            }
        )
    return out


def _since(value: str) -> str:
    try:
        return i18n.date_text(datetime.fromisoformat(value))
    except ValueError:
        return ""


@router.get(SHARING)
async def sharing_page(request: Request) -> Response:
    session, w = await holder_whose(request, SHARING)
    seen = await changes.overview(w.ctx, ins=w.ins)
    query = _typed(request.query_params.get("cherche", ""))
    town = _typed(request.query_params.get("ville", ""))
    profession = request.query_params.get("profession", "")
    if profession not in PROFESSION_LABELS:
        profession = ""
    searched = bool(query or town or profession)
    found = await _directory(w.ctx, query, profession, town) if searched else []
    lang = i18n.negotiate(request)
    with i18n.speaking(lang):
        _ = i18n.gettext
        people = [
            {
                "name": b["name"] or b["who"],
                "who": b["who"],
                "code": b["basis"],
                "withdrawable": b["holder_ends"],
                "basis": _basis(b["basis"]),
                "since": _since(b["granted_at"]),
                "preview": None if b["who"].startswith("finess:") else f"{PREVIEW}?rpps={b['who']}",
                "establishment": b["who"].startswith("finess:"),
            }
            for b in seen["bases"]
            if b["active"]
        ]
        settings = seen["settings"]
        emergency = [
            (
                "urgence",
                _("Accès en urgence par un professionnel de santé (article L1111-17)"),
                _(
                    "Un professionnel qui vous soigne en urgence peut lire votre dossier pendant quelques heures."
                ),
                not settings["emergency_refused"],
            ),
            (
                "samu",
                _("Accès par la régulation du SAMU (article R1111-48)"),
                _("Le médecin régulateur du SAMU peut lire votre dossier quand vous l'appelez."),
                not settings["samu_refused"],
            ),
            (
                "masques",
                _("Les documents que vous avez masqués sont montrés en cas d'urgence (article L1111-17)"),
                _("Sans cela, les documents masqués restent cachés, même en urgence."),
                bool(settings["masked_in_emergency"]),
            ),
        ]
        shared = set(settings["shared_sections"])
        sections = [(k, label, bool(shared & set(codes))) for k, (label, codes) in _section_words().items()]
        groups = _groups(settings)
        title = _("Qui peut voir son dossier") if w.child else _("Qui peut voir mon dossier")
        notice = _notices().get(request.query_params.get("message", ""), "")
    return render(
        request,
        "sharing.html",
        space.holder_page(w, session)
        | {
            "title": title,
            "people": people,
            "blocked": [(b["name"] or b["rpps"], b["rpps"]) for b in seen["blocked"]],
            "emergency": emergency,
            "notice": notice,
            "withdraw_url": WITHDRAW,
            "block_url": BLOCK,
            "unblock_url": UNBLOCK,
            "emergency_url": EMERGENCY,
            "sections": sections,
            "groups": groups,
            "sections_url": SECTIONS,
            "matrix_url": MATRIX,
            "consent_url": CONSENT,
            "query": query,
            "town": town,
            "profession": profession,
            "professions": sorted(PROFESSION_LABELS.items(), key=lambda p: p[1]),
            "searched": searched,
            "found": found,
        },
    )


def _typed(text: str) -> str:
    """What she typed in the search box, as one line of printable characters (at most 100)."""
    return "".join(c for c in " ".join(text.split()) if c.isprintable())[:100]


def _literal(text: str) -> str:
    """What she types is one value: FHIR's separators in it are escaped (FHIR R4 search §3.1.1.1.6)."""
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")


async def _directory(ctx: Any, query: str, profession: str = "", town: str = "") -> list[dict[str, str]]:
    """Professionals of the national directory by RPPS (11 digits) or name, profession (TRE_G15) and town,
    with their profession (the ANS's words) from their roles. By profession, the search is of their roles
    (PractitionerRole.code), following the role to the practitioner for the name and the town (one level of
    chaining, FHIR R4 search §3.1.1.4.8)."""
    query, town = _typed(query), _typed(town)
    if not (query or profession or town):
        return []
    g15 = valuesets.load("G15")
    by_rpps = query.isdigit()
    if profession:
        # Either way the directory writes the profession's system (its URL or its OID).
        either = ",".join(f"{system}|{profession}" for system in PROFESSION_SYSTEMS)
        pairs = [("role", either), ("_include", "PractitionerRole:practitioner")]
        if query:
            named = (
                ("practitioner.identifier", f"{RPPS}|{query}")
                if by_rpps
                else ("practitioner.name", _literal(query))
            )
            pairs.append(named)
        if town:
            pairs.append(("practitioner.address-city", _literal(town)))
        found = await fhir.search(ctx, "PractitionerRole", [*pairs, ("_count", str(FOUND_MAX))])
        roles, people = found.matches, found.included
    else:
        pairs = [("_revinclude", "PractitionerRole:practitioner")]
        if query:
            pairs.append(("identifier", f"{RPPS}|{query}") if by_rpps else ("name", _literal(query)))
        if town:
            pairs.append(("address-city", _literal(town)))
        found = await fhir.search(ctx, "Practitioner", [*pairs, ("_count", str(FOUND_MAX))])
        roles, people = found.included, found.matches
    professions: dict[str, str] = {}
    for stored in roles:
        role = orjson.loads(stored.body) if stored.body else {}
        ref = str(role.get("practitioner", {}).get("reference", ""))
        for code in role.get("code", []):
            for coding in code.get("coding", []):
                label = g15.display(coding.get("system"), coding.get("code"))
                if label and ref not in professions:
                    professions[ref] = label
    out = []
    for stored in people:
        body = orjson.loads(stored.body) if stored.body else {}
        rpps = next(
            (i.get("value", "") for i in body.get("identifier", []) if i.get("system") in RPPS_SYSTEMS), ""
        )
        if not rpps:
            continue
        name: dict[str, Any] = next(iter(body.get("name", [])), {})
        words = " ".join([*name.get("prefix", []), *name.get("given", []), name.get("family", "")]).strip()
        city = next((a.get("city", "") for a in body.get("address", []) if a.get("city")), "")
        out.append(
            {
                "rpps": rpps,
                "name": words or rpps,
                "profession": professions.get(f"Practitioner/{stored.resource_id}", ""),
                "city": str(city),
            }
        )
    return out


@router.post(CONSENT)
async def consent(request: Request) -> Response:
    async def change(w: Whose, form: FormData) -> str:
        await changes.grant(w.ctx, basis="consent", who=field(form, "rpps"), ins=w.ins)
        return "accord"

    return await _act(request, change)


@router.get(PREVIEW)
async def preview_page(request: Request, rpps: str = Query("", max_length=20)) -> Response:
    session, w = await holder_whose(request, SHARING)
    if not same_site(request):
        # The preview is recorded in her trace: another site may not make her browser write it there.
        return see_other(SHARING)
    try:
        validate_rpps(rpps)
    except IdentifierError:
        raise PageRefused(
            "Professionnel introuvable",
            "Ce numéro RPPS n'est pas valide.",
            "This RPPS number is not valid.",
            status=400,
            link=SHARING,
        ) from None
    seen = await changes.preview(w.ctx, rpps=rpps, ins=w.ins)
    lang = i18n.negotiate(request)
    with i18n.speaking(lang):
        _ = i18n.gettext
        who = seen["professional"]["name"] or rpps
        title = _("Ce que %(name)s peut voir") % {"name": who}
        items: list[dict[str, Any]] = [
            {
                "label": item["label"] or item["type"],
                "kind": _kind(item["type"]),
                "reason": item["reason_en"] if lang == "en" else item["reason"],
            }
            for item in seen["items"]
        ]
        bases = [_basis(b) for b in seen["bases"]]
    return render(
        request,
        "sharing_preview.html",
        space.holder_page(w, session)
        | {"title": title, "items": items, "bases": bases, "blocked": seen["blocked"], "back": SHARING},
    )


def _kind(rtype: str) -> str:
    _ = i18n.gettext
    return {
        "DocumentReference": _("Document"),
        "Observation": _("Mesure ou résultat"),
        "AllergyIntolerance": _("Allergie"),
        "Condition": _("Antécédent"),
        "Immunization": _("Vaccination"),
        "MedicationStatement": _("Traitement"),
        "Patient": _("Identité"),
    }.get(rtype, rtype)


# --- changes --------------------------------------------------------------------------------------------


def _notices() -> dict[str, str]:
    """The confirmation of each change, by the fixed key the redirection carries (never free text)."""
    _ = i18n.gettext
    return {
        "retire": _("C'est fait : ce professionnel n'a plus accès à ce dossier à ce titre."),
        "bloque": _(
            "C'est fait : ce professionnel est bloqué. Il n'a plus accès à ce dossier, même en urgence."
        ),
        "debloque": _("C'est fait : ce professionnel n'est plus bloqué."),
        "urgence": _("C'est fait : vos règles pour les urgences sont enregistrées."),
        "profil": _("C'est fait : les rubriques partagées de votre profil sont enregistrées."),
        "matrice": _("C'est fait : ce que lit cette profession est enregistré."),
        "accord": _(
            "C'est fait : ce professionnel a votre accord pour lire ce dossier. Vous pouvez le retirer ici."
        ),
    }


async def _act(request: Request, change: Change) -> Response:
    return await act(request, SHARING, change)


@router.post(WITHDRAW)
async def withdraw(request: Request) -> Response:
    async def change(w: Whose, form: FormData) -> str:
        await changes.revoke(w.ctx, basis=field(form, "base"), who=field(form, "qui"), ins=w.ins)
        return "retire"

    return await _act(request, change)


async def _blocking(request: Request, blocked: bool) -> Response:
    async def change(w: Whose, form: FormData) -> str:
        await changes.set_blocked(w.ctx, rpps=field(form, "rpps"), blocked=blocked, ins=w.ins)
        return "bloque" if blocked else "debloque"

    return await _act(request, change)


@router.post(BLOCK)
async def block(request: Request) -> Response:
    return await _blocking(request, True)


@router.post(UNBLOCK)
async def unblock(request: Request) -> Response:
    return await _blocking(request, False)


@router.post(EMERGENCY)
async def emergency_rules(request: Request) -> Response:
    async def change(w: Whose, form: FormData) -> str:
        def rules(now: changes.Settings) -> changes.Settings:
            return dataclasses.replace(
                now,
                emergency_refused=field(form, "urgence") != "oui",
                samu_refused=field(form, "samu") != "oui",
                masked_in_emergency=field(form, "masques") == "oui",
            )

        await changes.save_settings(w.ctx, rules, ins=w.ins)
        return "urgence"

    return await _act(request, change)


@router.post(SECTIONS)
async def shared_sections(request: Request) -> Response:
    async def change(w: Whose, form: FormData) -> str:
        words = _section_words()
        chosen = [k for k in form.getlist("rubrique") if isinstance(k, str) and k in words]
        codes = tuple(sorted(c for k in chosen for c in words[k][1]))
        await changes.save_settings(
            w.ctx, lambda now: dataclasses.replace(now, shared_sections=codes), ins=w.ins
        )
        return "profil"

    return await _act(request, change)


@router.post(MATRIX)
async def profession_reads(request: Request) -> Response:
    """Her adjustment for one group of professions: the classes they read, set as additions to and removals
    from the national rule, for each profession of the group (the policy applies them, access/matrix.py)."""

    async def change(w: Whose, form: FormData) -> str:
        matrix = habilitation.default()
        key = field(form, "groupe", 40)
        if key not in matrix.groups or key in CLOSED_GROUPS:
            raise BadRequest("groupe de professions inconnu / unknown group of professions")
        chosen = {c for c in form.getlist("categorie") if isinstance(c, str) and c in matrix.categories}

        def rules(now: changes.Settings) -> changes.Settings:
            overrides = {
                p: {k: list(v) for k, v in o.items()} for p, o in (now.matrix_overrides or {}).items()
            }
            members = matrix.groups[key][1]
            # What she changed is the difference from what the page shows for the group (its first
            # profession): applied to each profession of the group, whose other differences (set through the
            # API) stay as they were.
            shown = _reads(matrix, overrides, members[0])
            added, removed = chosen - shown, shown - chosen
            for profession in members:
                reads = (_reads(matrix, overrides, profession) | added) - removed
                default = set(matrix.by_profession[profession].read)
                mine = overrides.get(profession, {"add": [], "remove": []})
                # Her choices of profile sections for this profession stay; the document classes are replaced.
                add = [i for i in mine.get("add", []) if i not in matrix.categories] + sorted(reads - default)
                remove = [i for i in mine.get("remove", []) if i not in matrix.categories] + sorted(
                    default - reads
                )
                if add or remove:
                    overrides[profession] = {"add": add, "remove": remove}
                else:
                    overrides.pop(profession, None)
            return dataclasses.replace(now, matrix_overrides=overrides)

        await changes.save_settings(w.ctx, rules, ins=w.ins)
        return "matrice"

    # The token, the group and one box per document class.
    return await act(request, SHARING, change, max_fields=len(habilitation.default().categories) + 4)


def _reads(matrix: habilitation.Matrix, overrides: dict[str, Any], profession: str) -> set[str]:
    """The document classes `profession` reads with her adjustments."""
    change = overrides.get(profession, {})
    default = set(matrix.by_profession[profession].read)
    return (default | set(change.get("add", []))) - set(change.get("remove", []))


def install_sharing_pages(app: FastAPI) -> None:
    app.include_router(router)
