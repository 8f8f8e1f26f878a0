"""The one decision point (SECURITY V1 1.4.4, V4). Every read and write of FHIR data asks `decide` and passes
the returned `Decision` to storage; storage refuses to run without one. Only this module can make a Decision.

`decide` is a pure function of the actor, the action, the resource type and the facts of the spaces concerned
(`SpaceFacts`, read by storage/access.py inside the action's transaction). Its answer says, space by space,
which rows the actor reaches (`Slice`): storage turns that into SQL, so that reads, searches, counts, paging,
`_include` and `_revinclude` all see exactly the same set. Deny by default (STYLE habit 4): a kind of actor,
a type or a basis without a rule here gets nothing. The rules and their articles are in docs/access-policy.md
and PRODUCT.md section 4."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from espace_sante import clock
from espace_sante.access import matrix as habilitation
from espace_sante.access import named
from espace_sante.access.actors import Actor, level_at_least
from espace_sante.access.reasons import BASIS_CODES, Code, Reason

Action = Literal["create", "read", "vread", "update", "patch", "delete", "search", "history"]

_INTERACTION: dict[str, str] = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search": "s",
}
_READS = frozenset({"read", "vread", "history", "search"})

#: Document visibility codes (TRE_A07-StatutVisibiliteDocument, carried in DocumentReference.securityLabel).
HIDDEN_FROM_HOLDER = "INVISIBLE_PATIENT"
HIDDEN_FROM_REPRESENTATIVES = "INVISIBLE_REPRESENTANTS_LEGAUX"
MASKED_FROM_PROFESSIONALS = "MASQUE_PS"

DIRECTORY_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization"})
DOCUMENT_TYPES = frozenset({"DocumentReference", "Binary"})
#: Types a professional with a basis reads whatever their profession: who the holder is. (Submission sets,
#: Lists, name documents the reader may not see: they come back with the documents issue, filtered.)
PROFESSIONAL_OPEN_READ = frozenset({"Patient"})

Basis = Literal["medecin_traitant", "care_team", "consent", "emergency", "samu"]
#: Strongest first: the reason given for an access names the strongest basis held (reasons.BASIS_CODES).
BASES: tuple[Basis, ...] = ("medecin_traitant", "care_team", "consent", "emergency", "samu")

_MINT = object()

#: The lifecycle of a space (spaces/lifecycle.py, docs/lifecycle.md) decides who may reach it at all,
#: before any other rule. Professionals deposit and read only once the space is open (after the objection
#: window, or activated by the holder). Its holder and representatives reach it from its creation (they sign
#: in only once they activated it). Nobody reaches a suspended, closed (archived), opposed or destroyed space:
#: a closed one is reopened through the lifecycle service, not read; a destroyed one has no data left.
PROFESSIONAL_STATES = frozenset({"open", "active"})
PERSON_STATES = frozenset({"registered", "notified", "open", "active"})


@dataclass(frozen=True)
class SpaceFacts:
    """What the policy needs to know about one space and the actor asking (storage/access.py reads it).

    `relation` links a person to the space itself: its holder, or a legal representative whose rights end
    on `representative_until` (the minor's 18th birthday). `bases` are a professional's active bases there
    (emergency ones included while they last; the holder's refusals are applied here, not in storage)."""

    space_id: uuid.UUID
    patient_id: str = ""
    relation: Literal["holder", "representative", ""] = ""
    representative_until: date | None = None
    bases: frozenset[str] = frozenset()
    blocked: bool = False
    emergency_refused: bool = False
    samu_refused: bool = False
    masked_in_emergency: bool = False
    shared_sections: frozenset[str] | None = None
    overrides: Mapping[str, habilitation.Override] = field(default_factory=dict)
    #: The space's lifecycle state (space.state, migration 0009_lifecycle.sql).
    state: str = "active"


@dataclass(frozen=True)
class Rows:
    """Which rows of a type the actor reaches in a space. Only documents are filtered row by row; other
    types are reached whole or not at all. Storage turns this into SQL (storage/search.py `rows_sql`).

    - `categories`: the TRE_A03 document classes readable (None: every class).
    - `hidden`: visibility codes that hide a document.
    - `masked_author`: when set, a MASQUE_PS document stays visible if this Practitioner id authored it.
    - `author`: when set (`Type/id`), only documents authored by it (writing one's own documents).
    - `own_actions`: when set (`kind:id`), only the trace records of that actor (a professional's own accesses)."""

    categories: frozenset[str] | None = None
    hidden: frozenset[str] = frozenset()
    masked_author: str = ""
    author: str = ""
    own_actions: str = ""

    @property
    def everything(self) -> bool:
        return self == EVERYTHING


EVERYTHING = Rows()


@dataclass(frozen=True)
class Slice:
    spaces: frozenset[uuid.UUID]
    rows: Rows
    reason: Reason


@dataclass(frozen=True)
class Decision:
    """The answer of the policy for (actor, action, resource type, spaces).

    `allowed` says whether the interaction is permitted at all (a refusal is a 403, traced). `slices` is
    where: None means every space with every row (system feeds), otherwise exactly these spaces with their
    rows, and a space outside them is answered like one that does not exist. `reason` is the basis, a code
    with its parameters (access/reasons.py words it), for the trace and for refusals."""

    actor: Actor
    action: Action
    resource_type: str
    allowed: bool
    reason: Reason
    slices: tuple[Slice, ...] | None = None
    write_categories: frozenset[str] | None = None
    #: For a search with chained parameters (`item:DocumentReference.type=…`): the decision on each chained
    #: type, so that a chain only matches what the actor may see of its target (SECURITY FHIR attack 2).
    chains: Mapping[str, Decision] = field(default_factory=dict)
    _mint: object = field(default=None, repr=False, compare=False)
    #: With `slices` None (every space): only spaces in these lifecycle states. A machine client reaches
    #: open and active spaces only, like the professionals it acts for; the service itself reaches all.
    states: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self._mint is not _MINT:
            raise TypeError("only espace_sante.access.policy can make a Decision")

    @property
    def spaces(self) -> frozenset[uuid.UUID] | None:
        """The SQL scope: None for every space, otherwise only these."""
        if self.slices is None:
            return None
        return frozenset().union(*(s.spaces for s in self.slices))

    def covers(self, space_id: uuid.UUID) -> bool:
        return self.allowed and (self.slices is None or any(space_id in s.spaces for s in self.slices))

    def rows_in(self, space_id: uuid.UUID) -> Rows | None:
        """The rows reached in a space (None when the space is not covered)."""
        if not self.allowed:
            return None
        if self.slices is None:
            return EVERYTHING
        for s in self.slices:
            if space_id in s.spaces:
                return s.rows
        return None

    def reason_in(self, space_id: uuid.UUID) -> Reason:
        for s in self.slices or ():
            if space_id in s.spaces:
                return s.reason
        return self.reason

    def may_write_category(self, category: str | None) -> bool:
        """A document written under this decision must be of a class the actor may write."""
        return self.write_categories is None or (category is not None and category in self.write_categories)

    def require_read(self, resource_type: str, spaces: Iterable[uuid.UUID] = ()) -> None:
        """Storage's guard for data read outside a resource read (a space's INS or identity waiting for its
        Patient, its representatives, a notice's sealed words, a set-aside document): this decision must allow
        reading `resource_type` and cover each of `spaces` (storage filters out what it finds elsewhere)."""
        if not self.allowed or self.resource_type != resource_type or self.action not in _READS:
            raise PermissionError(
                f"decision for {self.action} {self.resource_type} used to read {resource_type}"
            )
        outside = [s for s in spaces if not self.covers(s)]
        if outside:
            raise PermissionError(f"decision for {self.resource_type} does not cover space {outside[0]}")

    def require(self, action: Action, resource_type: str) -> None:
        """Storage's guard: this decision must allow exactly this action on this type."""
        if not self.allowed or self.resource_type != resource_type or self.action != action:
            raise PermissionError(
                f"decision for {self.action} {self.resource_type} used for {action} {resource_type}"
            )


def with_chains(decision: Decision, chains: Mapping[str, Decision]) -> Decision:
    """The search decision carrying the decisions on its chained types."""
    return Decision(
        decision.actor,
        decision.action,
        decision.resource_type,
        decision.allowed,
        decision.reason,
        decision.slices,
        decision.write_categories,
        dict(chains),
        _MINT,
        decision.states,
    )


def needs_facts(actor: Actor) -> bool:
    """Whether decisions for this actor depend on the spaces' facts (people and apps do; machines do not)."""
    return actor.kind in ("holder", "representative", "practitioner", "app")


def decide(
    actor: Actor,
    action: Action,
    resource_type: str,
    facts: Sequence[SpaceFacts] | None = None,
    *,
    today: date | None = None,
) -> Decision:
    """Decide whether `actor` may do `action` on `resource_type`, and where.

    Without `facts`, the answer for a person is the type-level one (scopes): allowed or not, reaching no
    space yet. With `facts`, it reaches the spaces among them that a rule allows."""
    try:
        return _decide(actor, action, resource_type, facts, today or clock.today())
    except Exception:  # fail closed (ASVS 4.1.5): a fault in a rule refuses
        return Decision(actor, action, resource_type, False, Reason(Code.POLICY_ERROR), (), None, {}, _MINT)


def _decide(
    actor: Actor, action: Action, rtype: str, facts: Sequence[SpaceFacts] | None, today: date
) -> Decision:
    def answer(
        allowed: bool,
        reason: Reason,
        slices: tuple[Slice, ...] | None = (),
        writes: frozenset[str] | None = None,
        states: frozenset[str] | None = None,
    ) -> Decision:
        return Decision(
            actor, action, rtype, allowed, reason, slices if allowed else (), writes, {}, _MINT, states
        )

    if action not in _INTERACTION:
        return answer(False, Reason.of(Code.UNKNOWN_ACTION, action=str(action)))
    letter = _INTERACTION[action]
    scope = {"type": rtype, "interaction": letter}
    if actor.kind == "system":
        # The service's own actors: SYSTEM reaches everything, a named one only its allowance (access/named.py).
        if named.allowance(actor).allows(action, rtype):
            return answer(True, Reason(Code.SYSTEM_ACTOR), None)
        return answer(False, Reason.of(Code.NO_ALLOWANCE, actor=actor.id, type=rtype, interaction=letter))
    if actor.kind == "client":
        if actor.scopes.allows("system", rtype, letter):
            # Every space, but only open or active ones: a closed, suspended or opposed space is answered like
            # one that does not exist (PRODUCT section 2: a closed space is readable by no one). The directory
            # is no person's space and has no lifecycle state: it stays whole (review of 2026-12-03).
            states = None if rtype in DIRECTORY_TYPES else PROFESSIONAL_STATES
            return answer(True, Reason.of(Code.SYSTEM_SCOPE, **scope), None, states=states)
        return answer(False, Reason.of(Code.NO_SYSTEM_SCOPE, **scope))
    if rtype in DIRECTORY_TYPES:
        # The directory of professionals and organisations is public health-system data, not medical data:
        # any signed-in person may read it; only feeds write it.
        if action in _READS and actor.kind in ("holder", "representative", "practitioner", "operator", "app"):
            return answer(True, Reason(Code.DIRECTORY), None)
        return answer(False, Reason(Code.DIRECTORY_FEEDS_ONLY))
    if actor.kind == "operator":
        return answer(False, Reason(Code.OPERATOR))
    if actor.kind not in ("holder", "representative", "practitioner", "app"):
        return answer(False, Reason.of(Code.NO_RULE, kind=actor.kind))
    context = "user" if actor.kind == "practitioner" else "patient"
    if not actor.scopes.allows(context, rtype, letter):
        return answer(False, Reason.of(Code.NO_SESSION_SCOPE, context=context, **scope))
    granted = Reason.of(Code.SESSION_SCOPE, context=context, **scope)
    if facts is None:
        return answer(True, granted)
    rule = _practitioner_rule if actor.kind == "practitioner" else _person_rule
    groups: dict[tuple[Rows, Reason], set[uuid.UUID]] = {}
    writes: frozenset[str] | None = None
    for f in facts:
        # The space's state first (PERSON_STATES, PROFESSIONAL_STATES): a space out of reach in its state
        # is answered like one that does not exist, whatever the bases held there.
        if f.state not in (PROFESSIONAL_STATES if actor.kind == "practitioner" else PERSON_STATES):
            continue
        reached = rule(actor, action, rtype, f, today)
        if reached is None:
            continue
        rows, reason, categories = reached
        groups.setdefault((rows, reason), set()).add(f.space_id)
        if categories is not None:
            writes = categories if writes is None else writes & categories
    slices = tuple(Slice(frozenset(spaces), rows, reason) for (rows, reason), spaces in groups.items())
    reason = slices[0].reason if len(slices) == 1 else granted
    return answer(True, reason, slices, writes)


_Reached = tuple[Rows, Reason, frozenset[str] | None] | None


def _person_rule(actor: Actor, action: Action, rtype: str, f: SpaceFacts, today: date) -> _Reached:
    """The holder (directly or through an app they connected) and legal representatives of a minor."""
    if f.relation == "holder" and actor.kind in ("holder", "app"):
        hidden = frozenset({HIDDEN_FROM_HOLDER})
        reason = Reason(Code.HOLDER if actor.kind == "holder" else Code.HOLDER_APP)
    elif f.relation == "representative" and actor.kind == "representative":
        if f.representative_until is None or today >= f.representative_until:
            return None  # rights end at the minor's 18th birthday (R1111-38)
        hidden = frozenset({HIDDEN_FROM_HOLDER, HIDDEN_FROM_REPRESENTATIVES})
        reason = Reason(Code.REPRESENTATIVE)
    else:
        return None
    if rtype == "List":
        return None  # submission sets name documents hidden from people: the documents issue filters them
    if action in _READS:
        # The trace too keeps hidden documents hidden: no record of an access to them is listed (attack 3).
        filtered = rtype in DOCUMENT_TYPES or rtype == "AuditEvent"
        return (Rows(hidden=hidden) if filtered else EVERYTHING), reason, None
    if rtype == "Patient":
        return None  # identity comes from the insurer's registry (INS), not from the person
    if action == "create":
        return EVERYTHING, reason, None
    if action == "patch" and rtype == "DocumentReference":
        # A metadata update (PDSm): the holder masks any document they see from professionals, or archives it;
        # record/documents/ limits a person's change to exactly that (R1111-49).
        return Rows(hidden=hidden), reason, None
    if rtype in DOCUMENT_TYPES:
        # A person changes or removes only what they deposited (and its content); a professional's document
        # is theirs (SECURITY threat model: no edit of a professional's document).
        return Rows(hidden=hidden, author=f"Patient/{f.patient_id}"), reason, None
    if rtype in habilitation.default().sections:
        return EVERYTHING, reason, None  # the medical profile is the holder's to keep
    return None  # submission sets, messages, appointments: their own services decide


def _practitioner_rule(actor: Actor, action: Action, rtype: str, f: SpaceFacts, today: date) -> _Reached:
    if f.blocked:
        return None  # blocked by the holder: nothing, on any basis, emergency included (L1111-15)
    bases = set(f.bases) & set(BASES)
    if f.emergency_refused:
        bases.discard("emergency")
    if f.samu_refused:
        bases.discard("samu")
    if not bases:
        return None
    basis = next(b for b in BASES if b in bases)
    reason = Reason(BASIS_CODES[basis])
    treating = bases - {"emergency", "samu"}
    if action not in _READS and not treating:
        return None  # emergency access reads; it writes nothing
    is_mt = "medecin_traitant" in bases
    matrix = habilitation.default()
    override = f.overrides.get(actor.profession)
    if rtype == "AuditEvent":
        if action not in _READS:
            return None
        # The trace of a space: the médecin traitant sees all of it; another professional, their own accesses.
        return (EVERYTHING if is_mt else Rows(own_actions=str(actor))), reason, None
    if rtype in PROFESSIONAL_OPEN_READ:
        return (EVERYTHING, reason, None) if action in _READS else None
    if rtype in DOCUMENT_TYPES:
        operation: habilitation.Operation = "read" if action in _READS else "write"
        if is_mt:
            categories = None  # the médecin traitant reads and writes every document (L1111-16)
        else:
            categories = frozenset(
                c
                for c in matrix.categories
                if matrix.allows(actor.profession, operation, category=c, override=override)
            )
            if not categories:
                return None
        if operation == "write":
            if action == "create":
                return EVERYTHING, reason, categories
            # Replacing or removing a document: its author, or the médecin traitant.
            author = "" if is_mt else f"Practitioner/{actor.practitioner_id}"
            return Rows(author=author), reason, categories
        shows_masked = is_mt or (not treating and f.masked_in_emergency)
        hidden = frozenset() if shows_masked else frozenset({MASKED_FROM_PROFESSIONALS})
        masked_author = "" if shows_masked else actor.practitioner_id
        return Rows(categories=categories, hidden=hidden, masked_author=masked_author), reason, None
    if rtype in matrix.sections:
        shared = f.shared_sections
        if shared is None:
            shared = frozenset(s for s in matrix.sections if matrix.shared_by_default(s))
        if action in _READS and rtype not in shared:
            return None  # the holder keeps this part of their profile to themselves
        operation = "read" if action in _READS else "write"
        if is_mt or matrix.allows(actor.profession, operation, section=rtype, override=override):
            return EVERYTHING, reason, None
        return None
    return None  # messaging and appointments are reached through their own services, not by basis


# --- changes of rights ---------------------------------------------------------------------------------

Change = Literal[
    "consent", "care_team", "medecin_traitant", "revoke", "block", "unblock", "settings", "emergency",
    "representative", "preview", "notifications",
]  # fmt: skip
#: Changes the holder makes only after a strong sign-in (SECURITY V3 3.7.1: sharing changes; and whether she
#: is told of accesses, which someone on a weak session could otherwise silence before reading her record).
STRONG_CHANGES = frozenset({"consent", "revoke", "block", "unblock", "settings", "notifications"})
STRONG_LEVEL = "eidas2"


def may_change(
    actor: Actor, change: Change, facts: SpaceFacts | None, *, who: str = ""
) -> tuple[bool, Reason]:
    """Whether `actor` may make `change` to the rights on the space of `facts` (for professional `who`).

    The holder (or a representative of a minor) decides who sees their record; a professional may declare
    themselves in the care team, record the holder's consent given during a consultation, or open an
    emergency access, for themselves only and never when blocked; the insurer's feeds (system scopes) record
    the médecin traitant, care teams and legal representatives. Only professionals (RPPS) and establishments
    (FINESS) can ever be granted access: no insurer or employer has such an identifier (L1111-18)."""
    if facts is None:
        return False, Reason(Code.NO_SPACE)
    if facts.state not in PERSON_STATES:
        # The rights of a suspended, closed or opposed space do not change.
        return False, Reason.of(Code.SPACE_STATE, state=facts.state)
    # Rights are Consent-like data (FHIR Consent is the privacy rule resource): a token needs `Consent`
    # rights to change them, or to read them for a preview (SMART scopes; a session holds every scope).
    letter = "r" if change == "preview" else "c"
    context = {"practitioner": "user", "holder": "patient", "representative": "patient"}.get(actor.kind)
    if context is not None and not actor.scopes.allows(context, "Consent", letter):
        return False, Reason.of(Code.NO_SESSION_SCOPE, context=context, type="Consent", interaction=letter)
    if actor.kind in ("system", "client"):
        if actor.kind == "system" and not (
            named.allowance(actor).rights or named.allowance(actor).everything
        ):
            return False, Reason.of(Code.NO_ALLOWANCE, actor=actor.id, type="Consent", interaction="c")
        if actor.kind == "client" and not actor.scopes.allows("system", "Patient", "u"):
            return False, Reason.of(Code.NO_SYSTEM_SCOPE, type="Patient", interaction="u")
        if change in ("care_team", "medecin_traitant", "representative", "revoke"):
            return True, Reason(Code.INSURER_FEED)
        return False, Reason(Code.FEEDS_DO_NOT_DECIDE)
    person = (actor.kind == "holder" and facts.relation == "holder") or (
        actor.kind == "representative"
        and facts.relation == "representative"
        and facts.representative_until is not None
        and clock.today() < facts.representative_until
    )
    if person:
        if change in ("emergency", "representative"):
            return False, Reason(Code.NOT_HOLDERS_DECISION)
        if change in STRONG_CHANGES and not level_at_least(actor.acr, STRONG_LEVEL):
            return False, Reason.of(Code.STRONGER_SIGNIN, level=STRONG_LEVEL)
        return True, Reason(Code.HOLDER if actor.kind == "holder" else Code.REPRESENTATIVE)
    if actor.kind == "practitioner":
        if facts.blocked:
            return False, Reason(Code.BLOCKED)
        mine = who in (actor.id, f"finess:{actor.organisation}" if actor.organisation else actor.id)
        if change == "care_team" and mine:
            return True, Reason(Code.CARE_TEAM_DECLARED)
        if change == "consent" and who == actor.id:
            return True, Reason(Code.CONSENT_IN_CONSULTATION)
        if change == "emergency":
            return True, Reason(Code.EMERGENCY)
        return False, Reason(Code.NOT_PROFESSIONALS_DECISION)
    return False, Reason.of(Code.NO_RULE, kind=actor.kind)
