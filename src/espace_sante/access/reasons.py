"""The policy's reasons: a code and its parameters, worded here and nowhere else (issue 15).

Every decision of the policy (access/policy.py `decide`, `may_change`) and of the lifecycle rule beside it
(access/lifecycle.py `may`) carries a `Reason`. The trace records
it in `audit_event.basis` as `policy:<code>` with its parameters as a query string
(`policy:system-scope?interaction=r&type=Observation`); the words come from `WORDS`, in French and English,
for two readers: anyone (a refusal message, a professional's preview, the FHIR `purposeOfUse`) and the holder
reading her own trace, to whom "titulaire" is "vous-même" (audit/wording.py).

Records written before the codes hold the policy's old free text in the same column, inside their hash
chain: they keep it (rewriting them would break the chain) and `from_recorded` reads them through `_OLD_TEXTS`
and `_old_parameterised`, the explicit list of every text the policy ever wrote. A text that is neither a
code nor one of those has no words: it is shown as `UNWORDED`, never as recorded.

No I/O here: the policy imports this module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Literal
from urllib.parse import parse_qsl, urlencode

Lang = Literal["fr", "en"]

#: The prefix of a reason recorded as a code: no old free text starts with it.
PREFIX = "policy:"


class Code(StrEnum):
    """What the policy can answer. The value is what the trace records: never change one, only add."""

    # decide(): machines and the service itself
    SYSTEM_ACTOR = "system-actor"
    SYSTEM_SCOPE = "system-scope"  # type, interaction
    NO_SYSTEM_SCOPE = "no-system-scope"  # type, interaction
    #: A named service actor (access/named.py) asked for what its allowance does not hold.
    NO_ALLOWANCE = "no-allowance"  # actor, and type and interaction, or event (access/lifecycle.py)
    # decide(): people, apps and professionals' software, by the scopes of their sign-in
    SESSION_SCOPE = "session-scope"  # context (user, patient), type, interaction
    NO_SESSION_SCOPE = "no-session-scope"  # context, type, interaction
    DIRECTORY = "directory"
    DIRECTORY_FEEDS_ONLY = "directory-feeds-only"
    OPERATOR = "operator"
    NO_RULE = "no-rule"  # kind (of actor)
    UNKNOWN_ACTION = "unknown-action"  # action (or event: access/lifecycle.py)
    POLICY_ERROR = "policy-error"
    # decide(): the basis in one space
    HOLDER = "holder"
    HOLDER_APP = "holder-app"
    REPRESENTATIVE = "representative"
    MEDECIN_TRAITANT = "medecin-traitant"
    CARE_TEAM = "care-team"
    CONSENT = "consent"
    EMERGENCY = "emergency"
    SAMU = "samu"
    #: A person asked for a record they have no basis on (record/resources.py: answered "not found", traced).
    NO_BASIS = "no-basis"
    # may_change(): changes of rights
    NO_SPACE = "no-space"
    SPACE_STATE = "space-state"  # state
    INSURER_FEED = "insurer-feed"
    FEEDS_DO_NOT_DECIDE = "feeds-do-not-decide"
    NOT_HOLDERS_DECISION = "not-holders-decision"
    STRONGER_SIGNIN = "stronger-signin"  # level
    BLOCKED = "blocked"
    CARE_TEAM_DECLARED = "care-team-declared"
    CONSENT_IN_CONSULTATION = "consent-in-consultation"
    NOT_PROFESSIONALS_DECISION = "not-professionals-decision"
    # access/lifecycle.may(): changes of a space's state
    STATE_CHANGE = "state-change"  # role, event
    NO_STATE_CHANGE = "no-state-change"  # kind (of actor), event
    #: A development token (oauth/devtokens.py records the old text; listed so that it has words).
    DEVELOPMENT_TOKEN = "development-token"  # noqa: S105 (a reason code, not a secret)


@dataclass(frozen=True)
class Reason:
    """One reason: its code and parameters (sorted name, value pairs; values never hold medical data)."""

    code: Code
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, code: Code, **params: str) -> Reason:
        return cls(code, tuple(sorted(params.items())))

    def param(self, name: str) -> str:
        return dict(self.params).get(name, "")

    @cached_property
    def recorded(self) -> str:
        """The form the trace records (cached: the registry import records one per space created)."""
        return PREFIX + self.code.value + (f"?{urlencode(self.params)}" if self.params else "")


#: The bases of access (access/policy.py BASES) and the code of each.
BASIS_CODES: Mapping[str, Code] = {
    "medecin_traitant": Code.MEDECIN_TRAITANT,
    "care_team": Code.CARE_TEAM,
    "consent": Code.CONSENT,
    "emergency": Code.EMERGENCY,
    "samu": Code.SAMU,
}


@dataclass(frozen=True)
class Words:
    """A reason in words: for anyone (`fr`, `en`), and to the holder reading her own trace when that differs."""

    fr: str
    en: str
    fr_holder: str = ""
    en_holder: str = ""


WORDS: Mapping[Code, Words] = {
    Code.SYSTEM_ACTOR: Words("opération interne du service", "internal operation of the service"),
    Code.SYSTEM_SCOPE: Words("accès système autorisé", "authorised system access"),
    Code.NO_ALLOWANCE: Words(
        "cette tâche du service n'a pas ce droit", "this task of the service does not hold this right"
    ),
    Code.NO_SYSTEM_SCOPE: Words(
        "ce logiciel n'a pas le droit correspondant", "this software does not hold the corresponding right"
    ),
    Code.SESSION_SCOPE: Words("droit accordé à la connexion", "right granted at sign-in"),
    Code.NO_SESSION_SCOPE: Words(
        "cette connexion n'a pas le droit correspondant",
        "this connection does not hold the corresponding right",
    ),
    Code.DIRECTORY: Words(
        "annuaire des professionnels de santé, public", "public directory of health professionals"
    ),
    Code.DIRECTORY_FEEDS_ONLY: Words(
        "l'annuaire n'est modifié que par les flux officiels",
        "the directory is changed by official feeds only",
    ),
    Code.OPERATOR: Words(
        "les agents du service n'accèdent jamais aux données médicales",
        "service operators never reach medical data",
    ),
    Code.NO_RULE: Words("aucune règle n'autorise ce type d'utilisateur", "no rule allows this kind of user"),
    Code.UNKNOWN_ACTION: Words("action inconnue", "unknown action"),
    Code.POLICY_ERROR: Words(
        "erreur de la règle d'accès (refus par précaution)", "access rule error (refused as a precaution)"
    ),
    Code.HOLDER: Words(
        "titulaire du dossier",
        "holder of the record",
        "vous-même, titulaire du dossier",
        "yourself, the holder of the record",
    ),
    Code.HOLDER_APP: Words(
        "application autorisée par le titulaire",
        "an app the holder authorised",
        "application que vous avez autorisée",
        "an app you authorised",
    ),
    Code.REPRESENTATIVE: Words("représentant légal", "legal representative"),
    Code.MEDECIN_TRAITANT: Words("médecin traitant", "regular doctor (médecin traitant)"),
    Code.CARE_TEAM: Words("équipe de soins", "care team"),
    Code.CONSENT: Words(
        "consentement du titulaire", "the holder's consent", "votre consentement", "your consent"
    ),
    Code.EMERGENCY: Words("accès en urgence", "emergency access"),
    Code.SAMU: Words("régulation médicale (SAMU)", "emergency regulation (SAMU)"),
    Code.NO_BASIS: Words("aucune base d'accès sur ce dossier", "no basis of access on this record"),
    Code.NO_SPACE: Words("dossier introuvable", "no such record"),
    Code.SPACE_STATE: Words(
        "dans son état actuel, les droits de cet espace santé ne changent pas",
        "in its current state, the rights of this health space do not change",
    ),
    Code.INSURER_FEED: Words("flux de l'assurance maladie", "insurer feed"),
    Code.FEEDS_DO_NOT_DECIDE: Words(
        "les flux ne décident pas à la place du titulaire", "feeds do not decide for the holder"
    ),
    Code.NOT_HOLDERS_DECISION: Words(
        "ce changement n'est pas une décision du titulaire", "this change is not the holder's decision"
    ),
    Code.STRONGER_SIGNIN: Words("connexion renforcée requise", "a stronger sign-in is required"),
    Code.BLOCKED: Words("accès bloqué par le titulaire", "access blocked by the holder"),
    Code.CARE_TEAM_DECLARED: Words(
        "déclaration du professionnel (équipe de soins)", "the professional's declaration (care team)"
    ),
    Code.CONSENT_IN_CONSULTATION: Words(
        "consentement recueilli en consultation", "consent given during a consultation"
    ),
    Code.NOT_PROFESSIONALS_DECISION: Words(
        "ce changement n'est pas une décision du professionnel",
        "this change is not the professional's decision",
    ),
    Code.STATE_CHANGE: Words("changement d'état permis à ce rôle", "change of state allowed to this role"),
    Code.NO_STATE_CHANGE: Words(
        "ce changement d'état n'est pas permis à ce type d'utilisateur",
        "this change of state is not allowed to this kind of user",
    ),
    Code.DEVELOPMENT_TOKEN: Words("jeton de développement", "development token"),
}

#: What a reason nobody can word (an unknown code, a text no version of the policy wrote) is shown as.
UNWORDED = Words("raison non consignée en toutes lettres", "reason not recorded in words")


def words(reason: Reason | None, lang: Lang = "fr", *, to_holder: bool = False) -> str:
    """The reason in words; `to_holder` for the holder reading her own trace ("votre consentement")."""
    found = WORDS.get(reason.code, UNWORDED) if reason is not None else UNWORDED
    if lang == "fr":
        return (found.fr_holder or found.fr) if to_holder else found.fr
    return (found.en_holder or found.en) if to_holder else found.en


def both(reason: Reason | None) -> str:
    """French then English, for a message to the one who asked: "… / …"."""
    return f"{words(reason, 'fr')} / {words(reason, 'en')}"


def from_recorded(text: str) -> Reason | None:
    """The reason a trace record holds in `basis`: a code, or one of the policy's old texts; None otherwise."""
    text = text.strip()
    if text.startswith(PREFIX):
        name, _, query = text[len(PREFIX) :].partition("?")
        try:
            code = Code(name)
            params = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
        except ValueError:
            return None
        # Built directly, not through `of(**params)`: a stored parameter named like `of`'s own arguments is data.
        return Reason(code, tuple(sorted(dict(params).items())))
    return _OLD_TEXTS.get(text) or _old_parameterised(text)


# --- The policy's texts before the codes (records written until issue 15), every one of them ------------------

_OLD_TEXTS: Mapping[str, Reason] = {
    "system actor": Reason(Code.SYSTEM_ACTOR),
    "annuaire / directory": Reason(Code.DIRECTORY),
    "the directory is written by feeds only": Reason(Code.DIRECTORY_FEEDS_ONLY),
    "operators never reach medical data": Reason(Code.OPERATOR),
    "unknown action": Reason(Code.UNKNOWN_ACTION),
    "policy error": Reason(Code.POLICY_ERROR),
    "titulaire": Reason(Code.HOLDER),
    "application autorisée par le titulaire": Reason(Code.HOLDER_APP),
    "représentant légal": Reason(Code.REPRESENTATIVE),
    "médecin traitant": Reason(Code.MEDECIN_TRAITANT),
    "équipe de soins": Reason(Code.CARE_TEAM),
    "consentement du titulaire": Reason(Code.CONSENT),
    "accès en urgence": Reason(Code.EMERGENCY),
    "régulation médicale (SAMU)": Reason(Code.SAMU),
    "aucune base sur ce dossier / no basis on this record": Reason(Code.NO_BASIS),
    "no such space": Reason(Code.NO_SPACE),
    "flux de l'assurance maladie / insurer feed": Reason(Code.INSURER_FEED),
    "feeds do not decide for the holder": Reason(Code.FEEDS_DO_NOT_DECIDE),
    "not a holder's decision": Reason(Code.NOT_HOLDERS_DECISION),
    "blocked by the holder": Reason(Code.BLOCKED),
    "déclaration du professionnel (équipe de soins)": Reason(Code.CARE_TEAM_DECLARED),
    "consentement recueilli en consultation": Reason(Code.CONSENT_IN_CONSULTATION),
    "not a professional's decision": Reason(Code.NOT_PROFESSIONALS_DECISION),
    "jeton de développement / development token": Reason(Code.DEVELOPMENT_TOKEN),
}

_INTERACTIONS = frozenset("cruds")


def _scope(target: str) -> dict[str, str] | None:
    """ "Observation.r" as its type and interaction (None when it is not one)."""
    rtype, dot, letter = target.rpartition(".")
    if not dot or not rtype.isalpha() or letter not in _INTERACTIONS:
        return None
    return {"type": rtype, "interaction": letter}


def _old_parameterised(text: str) -> Reason | None:
    """The old texts with a part that varied, word for word as the policy wrote them."""
    match text.split(" "):
        case ["system", "scope", "grants", target] if (scope := _scope(target)) is not None:
            return Reason.of(Code.SYSTEM_SCOPE, **scope)
        case ["no", "system", "scope", "for", target] if (scope := _scope(target)) is not None:
            return Reason.of(Code.NO_SYSTEM_SCOPE, **scope)
        case [("user" | "patient") as context, "scope", "grants", target] if (
            scope := _scope(target)
        ) is not None:
            return Reason.of(Code.SESSION_SCOPE, context=context, **scope)
        case ["no", ("user" | "patient") as context, "scope", "for", target] if (
            scope := _scope(target)
        ) is not None:
            return Reason.of(Code.NO_SESSION_SCOPE, context=context, **scope)
        case ["no", "rule", "for", kind, "actors"] | ["no", "rule", "for", kind, "actors", "yet"] if kind:
            return Reason.of(Code.NO_RULE, kind=kind)
        case ["space", state] if state.isalpha():
            return Reason.of(Code.SPACE_STATE, state=state)
        case ["sign-in", "level", level, "required"] if level:
            return Reason.of(Code.STRONGER_SIGNIN, level=level)
    return None
