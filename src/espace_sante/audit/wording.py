"""The trace in plain words: one sentence per record, French first, for the holder (PRODUCT.md section 5:
"the holder, the médecin traitant and the professional concerned see this history in plain words, with the
basis of each access"; issue 4: "Dr X, pharmacist, read your prescription of 3 March — because: …").

The reader is the holder of the space: resources are "votre observation", the holder acting is "Vous".
Dates are shown in Europe/Paris time (the trace stores UTC instants), in words ("le 3 mars 2026 à 10 h 12").
Nothing here reads medical content: a record names a resource kind and an id, never a value, and a search
names its parameters, never what was searched for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from espace_sante.access import reasons
from espace_sante.clock import FRANCE
from espace_sante.storage.audit import Record

Lang = Literal["fr", "en"]


@dataclass(frozen=True)
class Kind:
    """How to name one resource type: "votre X", "vos X", "un X" (French), then the English forms."""

    mine: str
    mine_plural: str
    one: str
    en_mine: str
    en_mine_plural: str
    en_one: str


KINDS: dict[str, Kind] = {
    "Patient": Kind(
        "votre identité",
        "votre identité",
        "votre identité",
        "your identity",
        "your identity",
        "your identity",
    ),
    "Observation": Kind(
        "votre mesure (observation)",
        "vos mesures et observations",
        "une mesure (observation)",
        "your measurement (observation)",
        "your measurements and observations",
        "a measurement (observation)",
    ),
    "DocumentReference": Kind(
        "votre document", "vos documents", "un document", "your document", "your documents", "a document"
    ),
    "Binary": Kind(
        "le contenu de votre document",
        "le contenu de vos documents",
        "le contenu d'un document",
        "the content of your document",
        "the content of your documents",
        "the content of a document",
    ),
    "List": Kind(
        "votre lot de documents",
        "vos lots de documents",
        "un lot de documents",
        "your set of documents",
        "your sets of documents",
        "a set of documents",
    ),
    "Immunization": Kind(
        "votre vaccination",
        "vos vaccinations",
        "une vaccination",
        "your vaccination",
        "your vaccinations",
        "a vaccination",
    ),
    "AllergyIntolerance": Kind(
        "votre allergie", "vos allergies", "une allergie", "your allergy", "your allergies", "an allergy"
    ),
    "MedicationStatement": Kind(
        "votre traitement",
        "vos traitements",
        "un traitement",
        "your treatment",
        "your treatments",
        "a treatment",
    ),
    "Condition": Kind(
        "votre problème de santé",
        "vos antécédents et problèmes de santé",
        "un problème de santé",
        "your health problem",
        "your medical history and health problems",
        "a health problem",
    ),
    "Procedure": Kind(
        "votre acte médical",
        "vos actes médicaux",
        "un acte médical",
        "your medical procedure",
        "your medical procedures",
        "a medical procedure",
    ),
    "Consent": Kind(
        "votre consentement",
        "vos consentements",
        "un consentement",
        "your consent",
        "your consents",
        "a consent",
    ),
    "Communication": Kind(
        "votre message", "vos messages", "un message", "your message", "your messages", "a message"
    ),
    "Appointment": Kind(
        "votre rendez-vous",
        "vos rendez-vous",
        "un rendez-vous",
        "your appointment",
        "your appointments",
        "an appointment",
    ),
    "RelatedPerson": Kind(
        "votre proche", "vos proches", "un proche", "your relative", "your relatives", "a relative"
    ),
    "AuditEvent": Kind(
        "une entrée de l'historique des accès à votre dossier",
        "l'historique des accès à votre dossier",
        "une entrée de l'historique des accès",
        "an entry of the log of accesses to your record",
        "the log of accesses to your record",
        "an entry of the access log",
    ),
    # Directory data: only ever named in refusals (it lives outside any space).
    "Practitioner": Kind(
        "la fiche d'un professionnel de santé",
        "les fiches des professionnels de santé",
        "la fiche d'un professionnel de santé",
        "a health professional's entry",
        "the health professionals' entries",
        "a health professional's entry",
    ),
    "PractitionerRole": Kind(
        "la fiche d'exercice d'un professionnel",
        "les fiches d'exercice des professionnels",
        "la fiche d'exercice d'un professionnel",
        "a professional's practice entry",
        "the professionals' practice entries",
        "a professional's practice entry",
    ),
    "Organization": Kind(
        "la fiche d'un établissement",
        "les fiches des établissements",
        "la fiche d'un établissement",
        "an organisation's entry",
        "the organisations' entries",
        "an organisation's entry",
    ),
}
_DATA = Kind("vos données", "vos données", "vos données", "your data", "your data", "your data")

MONTHS_FR = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)
_MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

#: Search parameter names in plain words. Paging and formatting parameters say nothing about what was
#: looked for and are left out.
_PARAMS: dict[str, tuple[str, str]] = {
    "identifier": ("identifiant", "identifier"),
    "_id": ("identifiant technique", "technical id"),
    "_lastUpdated": ("date de mise à jour", "date of last change"),
    "date": ("date", "date"),
    "birthdate": ("date de naissance", "date of birth"),
    "family": ("nom de famille", "family name"),
    "given": ("prénom", "given name"),
    "name": ("nom", "name"),
    "gender": ("sexe", "sex"),
    "patient": ("patient", "patient"),
    "subject": ("patient", "patient"),
    "code": ("code", "code"),
    "category": ("catégorie", "category"),
    "type": ("type", "type"),
    "status": ("statut", "status"),
    "action": ("type d'action", "kind of action"),
    "subtype": ("type d'accès", "kind of access"),
    "outcome": ("résultat", "outcome"),
    "entity": ("élément concerné", "item concerned"),
    "agent": ("auteur de l'accès", "who accessed"),
    "author": ("auteur", "author"),
    "period": ("période", "period"),
}
_PAGING = frozenset(
    {
        "_count",
        "_offset",
        "_sort",
        "_summary",
        "_total",
        "_include",
        "_revinclude",
        "_format",
        "_pretty",
        "_upto",
    }
)


def kind(resource_type: str | None) -> Kind:
    return KINDS.get(resource_type or "", _DATA)


def when(instant: datetime, lang: Lang = "fr") -> str:
    """French "le 3 mars 2026 à 10 h 12", English "on 3 March 2026 at 10:12", in Paris time (summer and winter)."""
    local = instant.astimezone(FRANCE)
    if lang == "en":
        return f"on {local.day} {_MONTHS_EN[local.month - 1]} {local.year} at {local:%H:%M}"
    day = "1er" if local.day == 1 else str(local.day)
    return f"le {day} {MONTHS_FR[local.month - 1]} {local.year} à {local:%H} h {local:%M}"


def basis(recorded: str, lang: Lang = "fr") -> str:
    """The policy's reason a record holds (a code, or an old text: access/reasons.py), in words for the holder.
    A reason without words is said so, never shown as recorded."""
    if not recorded.strip():
        return "non précisée" if lang == "fr" else "not stated"
    return reasons.words(reasons.from_recorded(recorded), lang, to_holder=True)


def criteria(detail: str, lang: Lang = "fr") -> list[str]:
    """The parameter names a search recorded ("?date&identifier", "conditional ?identifier"), in words."""
    names = detail.split("?", 1)[1] if "?" in detail else ""
    words: list[str] = []
    for name in names.split("&"):
        base = name.split(":", 1)[0].split(".", 1)[0]
        if not base or base in _PAGING:
            continue
        fr, en = _PARAMS.get(base, (base, base))
        word = fr if lang == "fr" else en
        if word not in words:
            words.append(word)
    return words


def _quoted(name: str, lang: Lang) -> str:
    return f"« {name} »" if lang == "fr" else f"“{name}”"


def _actor(record: Record, lang: Lang) -> tuple[str, bool]:
    """(subject of the sentence, whether it is the reader: "Vous" takes "avez", not "a")."""
    name = record.actor_display.strip() or record.actor_id
    kind_ = record.actor_kind
    if kind_ == "holder":
        return ("Vous" if lang == "fr" else "You"), True
    if lang == "fr":
        subjects = {
            "client": f"Le logiciel {_quoted(name, lang)}",
            "app": f"L'application {_quoted(name, lang)}",
            "system": "Le service espace santé lui-même",
            "representative": f"Votre représentant légal {name}",
            "practitioner": f"Le professionnel de santé {name}",
            "operator": f"Un agent du service ({name})",
        }
        return subjects.get(kind_, f"L'utilisateur {_quoted(name, lang)}"), False
    subjects = {
        "client": f"The software {_quoted(name, lang)}",
        "app": f"The app {_quoted(name, lang)}",
        "system": "The espace santé service itself",
        "representative": f"Your legal representative {name}",
        "practitioner": f"The health professional {name}",
        "operator": f"A service operator ({name})",
    }
    return subjects.get(kind_, f"The user {_quoted(name, lang)}"), False


def _of(phrase: str) -> str:
    """French "de" before a noun phrase: du, des, d', de."""
    if phrase.startswith("le "):
        return "du " + phrase[3:]
    if phrase.startswith("les "):
        return "des " + phrase[4:]
    if phrase.startswith("l'"):
        return "de " + phrase
    if phrase[:1] in "aeéèêiouyh":
        return "d'" + phrase
    return "de " + phrase


def _what_fr(action: str, record: Record) -> str:
    """What was done, after "a"/"avez" (the past participle and its object)."""
    k = kind(record.entity_type)
    if action == "resource:read":
        return f"consulté {k.mine}"
    if action == "resource:vread":
        version = f"la version {record.entity_version}" if record.entity_version else "une version"
        return f"consulté {version} {_of(k.mine)}"
    if action == "resource:history":
        if record.entity_id:
            return f"consulté l'historique des modifications {_of(k.mine)}"
        return f"consulté l'historique des modifications {_of(k.mine_plural)}"
    if action == "resource:search":
        if record.entity_type == "AuditEvent":
            return f"consulté {k.mine_plural}"
        if record.entity_type == "Patient":  # a patient search finds the record itself
            return "recherché votre dossier"
        if record.detail.startswith("conditional"):  # If-None-Exist, conditional references
            return f"vérifié l'existence {_of(k.mine_plural)}"
        return f"recherché parmi {k.mine_plural}"
    if action == "resource:create":
        if record.entity_type == "Patient":
            return "ouvert votre dossier (votre identité)"
        return f"ajouté {k.one} à votre dossier"
    if action == "resource:update":
        return f"modifié {k.mine}"
    if action == "resource:delete":
        return f"supprimé {k.mine}"
    if action == "document:download":
        return "téléchargé votre document"
    if action == "document:mask":
        return "masqué votre document aux professionnels de santé"
    if action == "document:unmask":
        return "rendu votre document de nouveau visible aux professionnels de santé"
    if action == "document:hide":
        if record.detail == "INVISIBLE_REPRESENTANTS_LEGAUX":
            return "rendu un document invisible à vos représentants légaux"
        return "mis un document en attente d'une consultation d'annonce"
    if action == "document:release":
        if record.detail == "INVISIBLE_REPRESENTANTS_LEGAUX":
            return "rendu un document de nouveau visible à vos représentants légaux"
        return "rendu visible un document qui attendait une consultation d'annonce"
    return f"accédé à {k.mine}"


def _what_en(action: str, record: Record) -> str:
    k = kind(record.entity_type)
    if action == "resource:read":
        return f"read {k.en_mine}"
    if action == "resource:vread":
        version = f"version {record.entity_version}" if record.entity_version else "an earlier version"
        return f"read {version} of {k.en_mine}"
    if action == "resource:history":
        target = k.en_mine if record.entity_id else k.en_mine_plural
        return f"read the history of changes to {target}"
    if action == "resource:search":
        if record.entity_type == "AuditEvent":
            return f"read {k.en_mine_plural}"
        if record.entity_type == "Patient":
            return "searched for your record"
        if record.detail.startswith("conditional"):
            return f"checked whether {k.en_mine_plural} already held a match"
        return f"searched {k.en_mine_plural}"
    if action == "resource:create":
        if record.entity_type == "Patient":
            return "opened your record (your identity)"
        return f"added {k.en_one} to your record"
    if action == "resource:update":
        return f"changed {k.en_mine}"
    if action == "resource:delete":
        return f"deleted {k.en_mine}"
    if action == "document:download":
        return "downloaded your document"
    if action == "document:mask":
        return "masked your document from health professionals"
    if action == "document:unmask":
        return "made your document visible to health professionals again"
    if action == "document:hide":
        if record.detail == "INVISIBLE_REPRESENTANTS_LEGAUX":
            return "made a document invisible to your legal representatives"
        return "held a document back until an announcement consultation"
    if action == "document:release":
        if record.detail == "INVISIBLE_REPRESENTANTS_LEGAUX":
            return "made a document visible to your legal representatives again"
        return "released a document that was waiting for an announcement consultation"
    return f"accessed {k.en_mine}"


#: A refusal records the policy's action (access/policy.py Action) in `detail`: what was attempted.
_ATTEMPT: dict[str, str] = {
    "read": "resource:read",
    "vread": "resource:vread",
    "history": "resource:history",
    "search": "resource:search",
    "create": "resource:create",
    "update": "resource:update",
    "patch": "resource:update",
    "delete": "resource:delete",
}

_ATTEMPT_FR: dict[str, str] = {
    "resource:read": "la consultation {of_mine}",
    "resource:vread": "la consultation d'une version antérieure {of_mine}",
    "resource:history": "la consultation de l'historique {of_mine}",
    "resource:search": "une recherche parmi {plural}",
    "resource:create": "l'ajout {of_one}",
    "resource:update": "la modification {of_mine}",
    "resource:delete": "la suppression {of_mine}",
}
_ATTEMPT_EN: dict[str, str] = {
    "resource:read": "reading {mine}",
    "resource:vread": "reading an earlier version of {mine}",
    "resource:history": "reading the history of {mine}",
    "resource:search": "searching {plural}",
    "resource:create": "adding {one}",
    "resource:update": "changing {mine}",
    "resource:delete": "deleting {mine}",
}


_BASIS_NAMES: dict[str, tuple[str, str]] = {
    "consent": ("votre consentement", "your consent"),
    "care_team": ("l'équipe de soins", "the care team"),
    "medecin_traitant": ("médecin traitant", "regular doctor (médecin traitant)"),
    "emergency": ("accès en urgence", "emergency access"),
    "samu": ("régulation médicale (SAMU)", "emergency medical regulation (SAMU)"),
}
_EMERGENCY_REASONS: dict[str, tuple[str, str]] = {
    "unable_to_consent": (
        "vous n'étiez pas en état d'exprimer votre volonté",
        "you could not express your will",
    ),
    "immediate_risk": ("risque immédiat pour votre santé", "immediate risk to your health"),
    "samu_call": ("appel au SAMU vous concernant", "a call to the SAMU about you"),
}


def _rights_fr(record: Record) -> str:
    basis_code, _, rest = record.detail.partition("|")
    who, _, name = rest.partition("|")
    whom = (
        f"{name} ({who})"
        if name
        else (f"l'établissement FINESS {who[7:]}" if who.startswith("finess:") else who)
    )
    b = _BASIS_NAMES.get(basis_code, (basis_code, basis_code))[0]
    if record.action == "rights:grant":
        if basis_code == "consent":
            return f"autorisé {whom} à accéder à votre dossier (votre consentement)"
        if basis_code == "care_team":
            return f"enregistré {whom} dans votre équipe de soins"
        if basis_code == "medecin_traitant":
            return f"déclaré {whom} comme votre médecin traitant"
        return f"donné un accès à {whom} ({b})"
    if record.action == "rights:revoke":
        return f"retiré l'accès de {whom} ({b})"
    if record.action == "rights:block":
        return f"bloqué tout accès de {whom} à votre dossier"
    if record.action == "rights:unblock":
        return f"débloqué l'accès de {whom}"
    if record.action == "rights:settings":
        return "modifié vos règles de partage"
    if record.action == "rights:notifications":
        return "modifié les notifications que vous recevez par e-mail"
    if record.action == "rights:representative":
        return f"enregistré un représentant légal ({who})"
    if record.action == "rights:preview":
        return f"vérifié ce que {whom} peut voir de votre dossier"
    if record.action == "access:emergency":
        reason = _EMERGENCY_REASONS.get(who, (who, who))[0]
        kind_ = "un accès de régulation (SAMU)" if basis_code == "samu" else "un accès en urgence"
        return f"ouvert {kind_} à votre dossier (motif : {reason})"
    return "modifié les accès à votre dossier"


def _rights_en(record: Record) -> str:
    basis_code, _, rest = record.detail.partition("|")
    who, _, name = rest.partition("|")
    whom = (
        f"{name} ({who})"
        if name
        else (f"the establishment FINESS {who[7:]}" if who.startswith("finess:") else who)
    )
    b = _BASIS_NAMES.get(basis_code, (basis_code, basis_code))[1]
    if record.action == "rights:grant":
        if basis_code == "consent":
            return f"allowed {whom} to access your record (your consent)"
        if basis_code == "care_team":
            return f"recorded {whom} in your care team"
        if basis_code == "medecin_traitant":
            return f"declared {whom} as your regular doctor (médecin traitant)"
        return f"gave {whom} access ({b})"
    if record.action == "rights:revoke":
        return f"withdrew the access of {whom} ({b})"
    if record.action == "rights:block":
        return f"blocked all access by {whom} to your record"
    if record.action == "rights:unblock":
        return f"unblocked {whom}"
    if record.action == "rights:settings":
        return "changed your sharing rules"
    if record.action == "rights:notifications":
        return "changed the notifications you receive by e-mail"
    if record.action == "rights:representative":
        return f"recorded a legal representative ({who})"
    if record.action == "rights:preview":
        return f"checked what {whom} can see of your record"
    if record.action == "access:emergency":
        reason = _EMERGENCY_REASONS.get(who, (who, who))[1]
        kind_ = "an emergency regulation (SAMU) access" if basis_code == "samu" else "an emergency access"
        return f"opened {kind_} to your record (reason: {reason})"
    return "changed who can access your record"


def sentence(record: Record, lang: Lang = "fr") -> str:
    """One record as a sentence the holder understands, e.g. « Le logiciel « Logiciel du cabinet » a consulté
    votre mesure (observation) le 3 mars 2026 à 10 h 12 — base : accès système autorisé. »"""
    subject, reader = _actor(record, lang)
    at = when(record.recorded_at, lang)
    why = basis(record.basis, lang)
    if record.action.split(":", 1)[0] in _ACCOUNT_SUBJECTS:
        return _account_sentence(record, subject, reader, at, lang)
    if record.action.split(":", 1)[0] in ("oauth", "federation"):
        return _oauth_sentence(record, subject, reader, at, why, lang)
    if record.action.startswith("activation:"):
        return _activation_sentence(record, at, lang)
    if record.action.startswith("space:"):
        return _space_sentence(record, subject, reader, at, lang)
    if record.action == "notice:resolve":
        return _notice_sentence(record, subject, reader, at, lang)
    if record.action == "opposition:proof":
        if lang == "fr":
            return f"{subject} {'avez' if reader else 'a'} imprimé l'attestation de votre opposition {at}."
        return f"{subject} printed the proof of your objection {at}."
    if record.action == "token:issue":
        if lang == "fr":
            return (
                f"{subject} {'avez' if reader else 'a'} reçu un jeton de développement {at} — base : {why}."
            )
        return f"{subject} {'were' if reader else 'was'} given a development token {at} — basis: {why}."
    if record.action.startswith("rights:") or record.action == "access:emergency":
        if lang == "fr":
            return f"{subject} {'avez' if reader else 'a'} {_rights_fr(record)} {at} — base : {why}."
        return f"{subject} {_rights_en(record)} {at} — basis: {why}."
    refused = record.action == "access:refused" or record.outcome != "0"
    k = kind(record.entity_type)
    if lang == "fr":
        if refused:
            attempted = _ATTEMPT.get(record.detail, record.action)
            template = _ATTEMPT_FR.get(attempted, "l'accès {to_mine}")
            what = template.format(
                of_mine=_of(k.mine), of_one=_of(k.one), plural=k.mine_plural, to_mine="à " + k.mine
            )
            verb = "vous êtes vu refuser" if reader else "s'est vu refuser"
            return f"{subject} {verb} {what} {at} — motif : {why}."
        aux = "avez" if reader else "a"
        text = f"{subject} {aux} {_what_fr(record.action, record)} {at}"
        words = criteria(record.detail, lang) if record.action == "resource:search" else []
        if words:
            text += f" (critères : {', '.join(words)})"
        return f"{text} — base : {why}."
    if refused:
        attempted = _ATTEMPT.get(record.detail, record.action)
        template = _ATTEMPT_EN.get(attempted, "access to {mine}")
        what = template.format(mine=k.en_mine, one=k.en_one, plural=k.en_mine_plural)
        verb = "were refused" if reader else "was refused"
        return f"{subject} {verb} {what} {at} — reason: {why}."
    text = f"{subject} {_what_en(record.action, record)} {at}"
    words = criteria(record.detail, lang) if record.action == "resource:search" else []
    if words:
        text += f" (criteria: {', '.join(words)})"
    return f"{text} — basis: {why}."


# --- Sign-in and accounts (directory chain) -----------------------------------------------------------------
# Impersonal sentences ("Connexion à votre compte avec une clé d'accès le …"): no gender agreement to guess.
# `detail` holds the method or credential first (then, for sign-ins, "ip=<address>"); `basis` a reason code.

_ACCOUNT_SUBJECTS = frozenset({"signin", "session", "credential", "account"})

_SIGNIN_METHODS: dict[str, tuple[str, str]] = {
    "password+totp": (
        "un mot de passe et un code de l'application d'authentification",
        "a password and an authenticator app code",
    ),
    "password+recovery": ("un mot de passe et un code de secours", "a password and a recovery code"),
    "passkey": ("une clé d'accès", "a passkey"),
    "password": ("un mot de passe", "a password"),
    "totp": ("un code de l'application d'authentification", "an authenticator app code"),
    "recovery": ("un code de secours", "a recovery code"),
}
_CREDENTIALS: dict[str, tuple[str, str]] = {
    "passkey": ("une clé d'accès", "a passkey"),
    "totp": ("l'application d'authentification", "the authenticator app"),
    "password": ("le mot de passe", "the password"),
    "recovery-codes": ("les codes de secours", "the recovery codes"),
}
_SIGNIN_REASONS: dict[str, tuple[str, str]] = {
    "wrong secret": ("identifiant, mot de passe ou code incorrect", "wrong login, password or code"),
    "locked": ("trop d'essais : accès verrouillé pour un temps", "too many attempts: locked for a while"),
    "too many failures": ("trop d'essais infructueux", "too many failed attempts"),
    "disabled": ("compte désactivé", "account disabled"),
    "no second factor": ("aucun second facteur n'est configuré", "no second factor is set up"),
    "replayed code": ("code déjà utilisé", "code already used"),
}


def _account_sentence(record: Record, subject: str, reader: bool, at: str, lang: Lang) -> str:
    first = record.detail.split(" ", 1)[0]
    fr = lang == "fr"
    pick = 0 if fr else 1
    method = _SIGNIN_METHODS.get(first, (first, first))[pick]
    credential = _CREDENTIALS.get(first, (first, first))[pick]
    reason = _SIGNIN_REASONS.get(record.basis, (record.basis, record.basis))[pick]
    because = f" ({reason})" if reason else ""
    anonymous = record.actor_kind == "anonymous"
    lowered = subject[:1].lower() + subject[1:]
    if fr:
        of_owner = "de votre compte" if reader else f"du compte {_of(lowered)}"
        to_owner = "à votre compte" if reader else f"au compte {_of(lowered)}"
        if record.action == "signin:success":
            return f"Connexion {to_owner} avec {method} {at}."
        if record.action == "signin:failure":
            if anonymous:
                return f"Échec de connexion avec un identifiant inconnu{because} {at}."
            return f"Échec de connexion {to_owner}{because} {at}."
        if record.action == "signin:locked":
            return f"Verrouillage temporaire {of_owner}{because} {at}."
        if record.action == "session:end":
            return f"Déconnexion {of_owner} {at}."
        if record.action == "session:revoke":
            if first == "all":
                return f"Fermeture de toutes les sessions {of_owner} (déconnexion partout) {at}."
            return f"Fermeture d'une session {of_owner} {at}."
        if record.action == "credential:add":
            return f"Ajout {_of(credential)} {to_owner} {at}."
        if record.action == "credential:change":
            return f"Changement {_of(credential)} {of_owner} {at}."
        if record.action == "credential:remove":
            return f"Suppression {_of(credential)} {of_owner} {at}."
        if record.action == "account:create":
            return f"Création {of_owner} {at}."
        return f"Désactivation {of_owner} {at}."
    owner = "your account" if reader else f"the account of {lowered}"
    if record.action == "signin:success":
        return f"Sign-in to {owner} with {method} {at}."
    if record.action == "signin:failure":
        if anonymous:
            return f"Failed sign-in with an unknown login{because} {at}."
        return f"Failed sign-in to {owner}{because} {at}."
    if record.action == "signin:locked":
        return f"{owner[:1].upper() + owner[1:]} temporarily locked{because} {at}."
    if record.action == "session:end":
        return f"Sign-out from {owner} {at}."
    if record.action == "session:revoke":
        if first == "all":
            return f"Every session of {owner} closed (signed out everywhere) {at}."
        return f"A session of {owner} closed {at}."
    if record.action == "credential:add":
        return f"{credential[:1].upper() + credential[1:]} added to {owner} {at}."
    if record.action == "credential:change":
        return f"{credential[:1].upper() + credential[1:]} of {owner} changed {at}."
    if record.action == "credential:remove":
        return f"{credential[:1].upper() + credential[1:]} removed from {owner} {at}."
    if record.action == "account:create":
        return f"{owner[:1].upper() + owner[1:]} created {at}."
    return f"{owner[:1].upper() + owner[1:]} disabled {at}."


_PROVIDERS: dict[str, str] = {"fcplus": "FranceConnect+", "psc": "Pro Santé Connect"}
_WITHDRAW_REASONS: dict[str, tuple[str, str]] = {
    "disconnected": ("déconnexion de l'application", "the app was disconnected"),
    "refresh_reuse": (
        "un jeton de l'application a été réutilisé : accès coupé par précaution",
        "one of the app's tokens was reused: access cut off as a precaution",
    ),
}


def _oauth_sentence(record: Record, subject: str, reader: bool, at: str, why: str, lang: Lang) -> str:
    """Apps, software and identity providers (oauth/tokens.py, oauth/authorize.py, people/federation.py).
    Scopes are named by count, not listed: the consent page shows them in words."""
    first, _, rest = record.detail.partition("|")
    second, _, _scope = rest.partition("|")
    fr = lang == "fr"
    aux = ("avez" if reader else "a") if fr else ""
    if record.action == "oauth:token":
        if fr:
            return f"{subject} {aux} obtenu un accès à vos données {at} — base : {why}."
        return f"{subject} {'were' if reader else 'was'} given access to your data {at} — basis: {why}."
    if record.action in ("oauth:grant", "oauth:withdraw"):
        app = _quoted(second or first, lang)
        if record.action == "oauth:grant":
            if fr:
                return f"{subject} {aux} autorisé l'application {app} à accéder à votre dossier {at}."
            return f"{subject} authorised the app {app} to access your record {at}."
        reason = _WITHDRAW_REASONS.get(record.basis, (record.basis, record.basis))
        if fr:
            return f"L'accès de l'application {app} a été retiré {at} — motif : {reason[0]}."
        return f"The access of the app {app} was withdrawn {at} — reason: {reason[1]}."
    provider = _PROVIDERS.get(first, first)
    if record.action == "federation:signin":
        if fr:
            return f"{subject} {aux} ouvert une session avec {provider} {at}."
        return f"{subject} signed in with {provider} {at}."
    if fr:
        return f"Une connexion avec {provider} a été refusée {at} — motif : {second or why}."
    return f"A sign-in with {provider} was refused {at} — reason: {second or why}."


# --- Activation codes (spaces/activation.py) -------------------------------------------------------------
# Impersonal sentences. In the space's chain the code is the holder's ("votre code"); in the directory's chain
# the code named no space (unknown code, or refused before any lookup). `detail` holds "until=YYYY-MM-DD" for
# an issue, "ip=<address>" for an attempt; `basis` a reason code ("address" for a lockout of a client address,
# in the directory's chain). Never the code nor the birth date typed.

_ACTIVATION_REASONS: dict[str, tuple[str, str]] = {
    "wrong code": ("code inconnu", "unknown code"),
    "wrong birth date": ("date de naissance incorrecte", "wrong birth date"),
    "expired": ("code expiré", "expired code"),
    "used": ("code déjà utilisé", "code already used"),
    "locked": ("code bloqué après trop d'essais", "code locked after too many attempts"),
    "throttled": ("trop d'essais : réessayer plus tard", "too many attempts: try again later"),
}


def _until(detail: str, lang: Lang) -> str:
    """ "until=2026-04-14" as "jusqu'au 14 avril 2026" / "until 14 April 2026" ("" when absent)."""
    match = re.search(r"until=(\d{4})-(\d{2})-(\d{2})", detail)
    if match is None:
        return ""
    year, month, day = (int(g) for g in match.groups())
    if not 1 <= month <= 12:
        return ""
    if lang == "en":
        return f" (valid until {day} {_MONTHS_EN[month - 1]} {year})"
    return f" (valable jusqu'au {'1er' if day == 1 else day} {MONTHS_FR[month - 1]} {year})"


def _activation_sentence(record: Record, at: str, lang: Lang) -> str:
    fr = lang == "fr"
    reason = _ACTIVATION_REASONS.get(record.basis, (record.basis, record.basis))[0 if fr else 1]
    because = f" ({reason})" if reason else ""
    unknown = record.basis in ("wrong code", "throttled")
    if record.action == "activation:issue":
        until = _until(record.detail, lang)
        if record.basis == "reissue":
            if fr:
                return (
                    f"Un nouveau code d'activation a été émis pour votre espace {at}{until} : "
                    "le précédent ne fonctionne plus."
                )
            return f"A new activation code was issued for your space {at}{until}: the previous one no longer works."
        if fr:
            return f"Un code d'activation a été émis pour votre espace {at}{until}."
        return f"An activation code was issued for your space {at}{until}."
    if record.action == "activation:redeem":
        if fr:
            return f"Votre code d'activation a été utilisé, avec votre date de naissance, {at}."
        return f"Your activation code was used, with your birth date, {at}."
    if record.action == "activation:failure":
        if fr:
            whose = "un code d'activation" if unknown else "votre code d'activation"
            return f"Tentative d'activation refusée avec {whose}{because} {at}."
        whose = "an activation code" if unknown else "your activation code"
        return f"Activation attempt with {whose} refused{because} {at}."
    if record.basis == "address":
        if fr:
            return f"Tentatives d'activation bloquées pour une adresse après trop d'essais {at}."
        return f"Activation attempts from one address blocked after too many attempts {at}."
    if fr:
        return (
            f"Votre code d'activation a été bloqué après trop d'essais {at} : le service peut vous en envoyer "
            "un nouveau."
        )
    return (
        f"Your activation code was locked after too many attempts {at}: the service can send you a new one."
    )


# --- The lifecycle of a space (spaces/lifecycle.py) --------------------------------------------------------
# `detail` is "from>to|reason"; the reason is an opposition's channel or a closure's cause.

_CHANNELS: dict[str, tuple[str, str]] = {
    "online": ("en ligne", "online"),
    "phone": ("par téléphone", "by phone"),
    "counter": ("à un guichet", "at a counter"),
}
_CLOSURES: dict[str, tuple[str, str]] = {
    "holder": ("à votre demande", "at your request"),
    "death": ("à la suite d'un décès", "following a death"),
    "suspension": (
        "suspension non contestée dans le délai",
        "the suspension was not contested in time",
    ),
}
_SPACE_WORDS: dict[str, tuple[str, str]] = {
    "space:register": (
        "créé votre espace santé d'après le registre de l'Assurance Maladie (vos nom, date de naissance et "
        "adresse ; votre fiche y sera écrite à son ouverture)",
        "created your health space from the insurer's registry (your name, birth date and address; your "
        "identity record is written into it when it opens)",
    ),
    "space:notify": (
        "envoyé l'avis de création de votre espace santé",
        "sent the notice that your health space is being created",
    ),
    "space:oppose": (
        "enregistré votre opposition à la création de votre espace santé",
        "recorded your objection to the creation of your health space",
    ),
    "space:request": (
        "demandé la création de votre espace santé après une opposition",
        "asked for your health space after an earlier objection",
    ),
    "space:open": (
        "ouvert votre espace santé (fin du délai d'opposition)",
        "opened your health space (the objection period ended)",
    ),
    "space:activate": ("activé votre espace santé", "activated your health space"),
    "space:suspend": ("suspendu votre espace santé", "suspended your health space"),
    "space:resume": (
        "levé la suspension de votre espace santé",
        "lifted the suspension of your health space",
    ),
    "space:close": ("fermé votre espace santé", "closed your health space"),
    "space:reopen": (
        "rouvert votre espace santé, avec toutes ses données",
        "reopened your health space, with all its data",
    ),
    "space:erase": (
        "demandé la destruction de votre espace santé",
        "asked for your health space to be destroyed",
    ),
    "space:of_age": (
        "noté votre majorité : vos représentants légaux n'ont plus accès à votre espace santé",
        "noted that you came of age: your legal representatives no longer reach your health space",
    ),
    "space:destroy": (
        "détruit définitivement les données de votre espace santé",
        "destroyed the data of your health space for good",
    ),
}


_NOTICE_RESOLUTIONS: dict[str, tuple[str, str]] = {
    "delivered": (
        "vérifié que l'avis de création envoyé par courriel vous a bien été remis",
        "checked that the notice e-mailed to you was delivered",
    ),
    "resend": (
        "renvoyé l'avis de création par courriel, le premier envoi n'ayant pas abouti",
        "sent the notice by e-mail again, the first one having failed",
    ),
    "letter": (
        "remplacé l'avis de création par courriel par une lettre",
        "replaced the notice by e-mail with a letter",
    ),
}


def _notice_sentence(record: Record, subject: str, reader: bool, at: str, lang: Lang) -> str:
    pick = 0 if lang == "fr" else 1
    what = _NOTICE_RESOLUTIONS.get(record.basis, ("traité un avis", "handled a notice"))[pick]
    if lang == "fr":
        return f"{subject} {'avez' if reader else 'a'} {what} {at}."
    return f"{subject} {what} {at}."


def _space_sentence(record: Record, subject: str, reader: bool, at: str, lang: Lang) -> str:
    pick = 0 if lang == "fr" else 1
    what = _SPACE_WORDS.get(record.action, ("modifié votre espace santé", "changed your health space"))[pick]
    if record.action == "space:register" and record.detail.startswith("notified|"):
        # The registry import with --notify: made and notified in one transaction, one record.
        what += (
            " et envoyé l'avis de sa création avec votre code d'activation",
            " and sent the notice of its creation with your activation code",
        )[pick] + _until(record.detail, lang)
    reason = record.detail.partition("|")[2]
    words = _CHANNELS.get(reason) if record.action == "space:oppose" else _CLOSURES.get(reason)
    if words is not None and record.action in ("space:oppose", "space:close"):
        what += f" ({words[pick]})"
    if lang == "fr":
        return f"{subject} {'avez' if reader else 'a'} {what} {at}."
    return f"{subject} {what} {at}."
