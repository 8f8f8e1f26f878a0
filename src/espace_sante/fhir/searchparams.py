"""FHIR R4 search parameters: which exist, and extracting their values from a resource.

The definitions follow the R4 search parameter registry (http://hl7.org/fhir/R4/searchparameter-registry.html)
with FHIRPath expressions reduced to simple dotted paths:

* ``X.where(resolve() is Patient)`` becomes the path ``X`` with the only target ``Patient``;
* ``(X.value as Quantity)`` becomes ``X.valueQuantity``; ``X.value`` (a choice) becomes ``X.value[x]``.

Values are extracted on write into typed, hashable records (one per index row) so that searches never
read resource bodies.  The walk is a plain dictionary walk (no FHIRPath engine) and never raises on
odd but JSON-valid input: anything of an unexpected shape is skipped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final, Literal, TypeGuard

ParamType = Literal["token", "string", "date", "reference", "quantity", "number", "uri"]


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter of one resource type (R4 SearchParameter, reduced)."""

    name: str
    type: ParamType
    resource_type: str
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()
    description: str = ""


# --------------------------------------------------------------------------------------------------
# Definitions.  One row: (name, type, paths separated by " | ", targets separated by spaces, description).
# Targets are the R4 "Target Resources"; an empty string means "Any".
# --------------------------------------------------------------------------------------------------

_Row = tuple[str, ParamType, str, str, str]

_WHO = "Practitioner Organization Patient PractitionerRole RelatedPerson"

# fmt: off
_TABLE: Final[dict[str, tuple[_Row, ...]]] = {
    "Patient": (
        ("identifier", "token", "Patient.identifier", "", "A patient identifier"),
        ("name", "string", "Patient.name", "", "Any part of the name (family, given, prefix, suffix, text)"),
        ("family", "string", "Patient.name.family", "", "A portion of the family name"),
        ("given", "string", "Patient.name.given", "", "A portion of the given name"),
        ("birthdate", "date", "Patient.birthDate", "", "The patient's date of birth"),
        ("gender", "token", "Patient.gender", "", "Gender of the patient"),
        ("address-city", "string", "Patient.address.city", "", "A city specified in an address"),
        ("address-postalcode", "string", "Patient.address.postalCode", "", "A postal code"),
        ("address", "string", "Patient.address", "", "Any part of an address"),
        ("telecom", "token", "Patient.telecom", "", "The value in any kind of telecom details"),
        ("active", "token", "Patient.active", "", "Whether the patient record is active"),
        ("general-practitioner", "reference", "Patient.generalPractitioner",
         "Practitioner Organization PractitionerRole", "Patient's nominated general practitioner"),
        ("link", "reference", "Patient.link.other", "Patient RelatedPerson", "Linked patient or person"),
    ),
    "RelatedPerson": (
        ("identifier", "token", "RelatedPerson.identifier", "", "An identifier of the person"),
        ("patient", "reference", "RelatedPerson.patient", "Patient", "The patient this person is related to"),
        ("name", "string", "RelatedPerson.name", "", "Any part of the name"),
        ("relationship", "token", "RelatedPerson.relationship", "", "The relationship to the patient"),
        ("birthdate", "date", "RelatedPerson.birthDate", "", "The person's date of birth"),
    ),
    "Practitioner": (
        ("identifier", "token", "Practitioner.identifier", "", "A practitioner's identifier (RPPS...)"),
        ("name", "string", "Practitioner.name", "", "Any part of the name"),
        ("family", "string", "Practitioner.name.family", "", "A portion of the family name"),
        ("given", "string", "Practitioner.name.given", "", "A portion of the given name"),
        ("active", "token", "Practitioner.active", "", "Whether the record is active"),
        ("address-city", "string", "Practitioner.address.city", "", "A city specified in an address"),
    ),
    "PractitionerRole": (
        ("identifier", "token", "PractitionerRole.identifier", "", "A role identifier"),
        ("practitioner", "reference", "PractitionerRole.practitioner", "Practitioner", "The practitioner"),
        ("organization", "reference", "PractitionerRole.organization", "Organization", "The organization"),
        ("role", "token", "PractitionerRole.code", "", "The role the practitioner has"),
        ("specialty", "token", "PractitionerRole.specialty", "", "The practitioner's specialty"),
        ("active", "token", "PractitionerRole.active", "", "Whether the role is active"),
    ),
    "Organization": (
        ("identifier", "token", "Organization.identifier", "", "An organization identifier (FINESS...)"),
        ("name", "string", "Organization.name | Organization.alias", "", "Name or alias"),
        ("type", "token", "Organization.type", "", "The kind of organization"),
        ("active", "token", "Organization.active", "", "Whether the record is active"),
        ("address-city", "string", "Organization.address.city", "", "A city specified in an address"),
        ("partof", "reference", "Organization.partOf", "Organization", "The parent organization"),
    ),
    "DocumentReference": (
        ("identifier", "token", "DocumentReference.masterIdentifier | DocumentReference.identifier", "",
         "Master version specific identifier or other identifier"),
        ("patient", "reference", "DocumentReference.subject", "Patient", "Who the document is about"),
        ("subject", "reference", "DocumentReference.subject", "Practitioner Group Device Patient",
         "Who/what is the subject of the document"),
        ("status", "token", "DocumentReference.status", "", "current | superseded | entered-in-error"),
        ("type", "token", "DocumentReference.type", "", "Kind of document"),
        ("category", "token", "DocumentReference.category", "", "Categorization of document"),
        ("date", "date", "DocumentReference.date", "", "When this document reference was created"),
        ("author", "reference", "DocumentReference.author",
         "Practitioner Organization Device Patient PractitionerRole RelatedPerson", "Who authored it"),
        ("custodian", "reference", "DocumentReference.custodian", "Organization", "Who maintains it"),
        ("relatesto", "reference", "DocumentReference.relatesTo.target", "DocumentReference",
         "Target of the relationship"),
        ("relation", "token", "DocumentReference.relatesTo.code", "", "replaces | transforms | signs..."),
        ("security-label", "token", "DocumentReference.securityLabel", "", "Document security tags"),
        ("format", "token", "DocumentReference.content.format", "", "Format/content rules for the document"),
        ("facility", "token", "DocumentReference.context.facilityType", "", "Kind of facility"),
        ("setting", "token", "DocumentReference.context.practiceSetting", "", "Clinical specialty"),
        ("event", "token", "DocumentReference.context.event", "", "Main clinical acts documented"),
        ("period", "date", "DocumentReference.context.period", "", "Time of service documented"),
        ("contenttype", "token", "DocumentReference.content.attachment.contentType", "", "MIME type"),
        # IHE MHD ITI-67 (PDSm): when the document itself was created.
        ("creation", "date", "DocumentReference.content.attachment.creation", "", "Date attachment was first created"),
        ("language", "token", "DocumentReference.content.attachment.language", "", "Human language"),
        ("description", "string", "DocumentReference.description", "", "Human-readable description"),
    ),
    "Binary": (),
    "List": (
        ("identifier", "token", "List.identifier", "", "Business identifier"),
        ("patient", "reference", "List.subject", "Patient", "If all resources have the same subject"),
        ("subject", "reference", "List.subject", "Device Group Location Patient", "The list's subject"),
        ("status", "token", "List.status", "", "current | retired | entered-in-error"),
        ("code", "token", "List.code", "", "What the purpose of this list is"),
        ("date", "date", "List.date", "", "When the list was prepared"),
        ("source", "reference", "List.source", "Practitioner Device Patient PractitionerRole",
         "Who and/or what defined the list"),
        ("title", "string", "List.title", "", "Descriptive name for the list"),
        ("item", "reference", "List.entry.item", "", "Actual entry"),
        ("encounter", "reference", "List.encounter", "Encounter", "Context in which list created"),
    ),
    "AllergyIntolerance": (
        ("identifier", "token", "AllergyIntolerance.identifier", "", "A business identifier"),
        ("patient", "reference", "AllergyIntolerance.patient", "Patient", "Who the sensitivity is for"),
        ("clinical-status", "token", "AllergyIntolerance.clinicalStatus", "", "active | inactive | resolved"),
        ("verification-status", "token", "AllergyIntolerance.verificationStatus", "", "Certainty"),
        ("code", "token", "AllergyIntolerance.code | AllergyIntolerance.reaction.substance", "",
         "Code that identifies the allergy or intolerance"),
        ("category", "token", "AllergyIntolerance.category", "", "food | medication..."),
        ("criticality", "token", "AllergyIntolerance.criticality", "", "low | high | unable-to-assess"),
        ("date", "date", "AllergyIntolerance.recordedDate", "", "Date first version was recorded"),
        ("recorder", "reference", "AllergyIntolerance.recorder",
         "Practitioner Patient PractitionerRole RelatedPerson", "Who recorded the sensitivity"),
        ("asserter", "reference", "AllergyIntolerance.asserter",
         "Practitioner Patient PractitionerRole RelatedPerson", "Source of the information"),
    ),
    "MedicationStatement": (
        ("identifier", "token", "MedicationStatement.identifier", "", "A business identifier"),
        ("patient", "reference", "MedicationStatement.subject", "Patient", "Who is taking the medication"),
        ("subject", "reference", "MedicationStatement.subject", "Group Patient", "Who is taking it"),
        ("status", "token", "MedicationStatement.status", "", "Status of the statement"),
        ("code", "token", "MedicationStatement.medicationCodeableConcept", "", "Code of the medication"),
        ("effective", "date", "MedicationStatement.effective[x]", "", "When it is/was being taken"),
        ("medication", "reference", "MedicationStatement.medicationReference", "Medication",
         "Medication resource"),
        ("category", "token", "MedicationStatement.category", "", "Type of statement"),
        ("source", "reference", "MedicationStatement.informationSource", _WHO, "Who informed"),
    ),
    "Condition": (
        ("identifier", "token", "Condition.identifier", "", "A business identifier"),
        ("patient", "reference", "Condition.subject", "Patient", "Who has the condition"),
        ("subject", "reference", "Condition.subject", "Group Patient", "Who has the condition"),
        ("code", "token", "Condition.code", "", "Code for the condition"),
        ("clinical-status", "token", "Condition.clinicalStatus", "", "The clinical status"),
        ("verification-status", "token", "Condition.verificationStatus", "", "The verification status"),
        ("category", "token", "Condition.category", "", "The category of the condition"),
        # R4: Condition.onset.as(dateTime) | Condition.onset.as(Period); other onset types never parse.
        ("onset-date", "date", "Condition.onset[x]", "", "Date related onsets"),
        ("recorded-date", "date", "Condition.recordedDate", "", "Date recorded"),
        ("asserter", "reference", "Condition.asserter", "Practitioner Patient PractitionerRole RelatedPerson",
         "Person who asserts this condition"),
    ),
    "Procedure": (
        ("identifier", "token", "Procedure.identifier", "", "A business identifier"),
        ("patient", "reference", "Procedure.subject", "Patient", "Who the procedure was performed on"),
        ("subject", "reference", "Procedure.subject", "Group Patient", "Who the procedure was performed on"),
        ("code", "token", "Procedure.code", "", "A code to identify the procedure"),
        ("status", "token", "Procedure.status", "", "The status of the procedure"),
        ("date", "date", "Procedure.performed[x]", "", "When the procedure was performed"),
        ("performer", "reference", "Procedure.performer.actor",
         "Practitioner Organization Device Patient PractitionerRole RelatedPerson", "The performer"),
        ("category", "token", "Procedure.category", "", "Classification of the procedure"),
    ),
    "Immunization": (
        ("identifier", "token", "Immunization.identifier", "", "A business identifier"),
        ("patient", "reference", "Immunization.patient", "Patient", "The patient for the vaccination record"),
        ("vaccine-code", "token", "Immunization.vaccineCode", "", "Vaccine product administered"),
        ("status", "token", "Immunization.status", "", "Immunization event status"),
        ("date", "date", "Immunization.occurrence[x]", "", "Vaccination administration date"),
        ("performer", "reference", "Immunization.performer.actor",
         "Practitioner Organization PractitionerRole", "The practitioner or organization who administered"),
        ("lot-number", "string", "Immunization.lotNumber", "", "Vaccine lot number"),
    ),
    "Observation": (
        ("identifier", "token", "Observation.identifier", "", "A business identifier"),
        ("patient", "reference", "Observation.subject", "Patient", "The patient observed"),
        ("subject", "reference", "Observation.subject", "Group Device Patient Location", "The subject"),
        ("code", "token", "Observation.code", "", "The code of the observation type"),
        ("category", "token", "Observation.category", "", "The classification of the type of observation"),
        ("status", "token", "Observation.status", "", "The status of the observation"),
        ("date", "date", "Observation.effective[x]", "", "Clinically relevant time/time-period"),
        ("value-quantity", "quantity", "Observation.valueQuantity", "", "The value of the observation"),
        ("performer", "reference", "Observation.performer",
         "Practitioner Organization Patient PractitionerRole CareTeam RelatedPerson", "Who performed it"),
        ("combo-code", "token", "Observation.code | Observation.component.code", "",
         "The code of the observation or of a component"),
    ),
    "Consent": (
        ("identifier", "token", "Consent.identifier", "", "A business identifier"),
        ("patient", "reference", "Consent.patient", "Patient", "Who the consent applies to"),
        ("status", "token", "Consent.status", "", "draft | proposed | active | rejected | inactive"),
        ("category", "token", "Consent.category", "", "Classification of the consent statement"),
        ("scope", "token", "Consent.scope", "", "Which of the four areas this resource covers"),
        ("date", "date", "Consent.dateTime", "", "When this consent was created or indexed"),
        ("actor", "reference", "Consent.provision.actor.reference",
         "Practitioner Group Organization CareTeam Patient Device PractitionerRole RelatedPerson",
         "Resource for the actor (or group, by role)"),
        ("period", "date", "Consent.provision.period", "", "Timeframe for this rule"),
        ("purpose", "token", "Consent.provision.purpose", "", "Context of activities covered by this rule"),
    ),
    "Communication": (
        ("identifier", "token", "Communication.identifier", "", "A business identifier"),
        ("patient", "reference", "Communication.subject", "Patient", "Focus of the message"),
        ("subject", "reference", "Communication.subject", "Group Patient", "Focus of the message"),
        ("status", "token", "Communication.status", "", "The status of the communication"),
        ("category", "token", "Communication.category", "", "Message category"),
        ("sent", "date", "Communication.sent", "", "When sent"),
        ("received", "date", "Communication.received", "", "When received"),
        ("sender", "reference", "Communication.sender",
         "Practitioner Organization Device Patient PractitionerRole HealthcareService RelatedPerson",
         "Message sender"),
        ("recipient", "reference", "Communication.recipient",
         "Practitioner Group Organization CareTeam Device Patient HealthcareService PractitionerRole "
         "RelatedPerson", "Message recipient"),
        ("based-on", "reference", "Communication.basedOn", "", "Request fulfilled by this communication"),
    ),
    "Appointment": (
        ("identifier", "token", "Appointment.identifier", "", "A business identifier"),
        ("patient", "reference", "Appointment.participant.actor", "Patient", "One of the individuals"),
        ("actor", "reference", "Appointment.participant.actor",
         "Practitioner Device Patient HealthcareService PractitionerRole RelatedPerson Location",
         "Any one of the individuals participating in the appointment"),
        ("practitioner", "reference", "Appointment.participant.actor", "Practitioner",
         "One of the individuals of the appointment is this practitioner"),
        ("status", "token", "Appointment.status", "", "The overall status of the appointment"),
        ("date", "date", "Appointment.start", "", "Appointment date/time"),
        ("service-type", "token", "Appointment.serviceType", "", "The specific service to be performed"),
        ("appointment-type", "token", "Appointment.appointmentType", "", "The style of appointment"),
    ),
    "AuditEvent": (
        ("patient", "reference", "AuditEvent.agent.who | AuditEvent.entity.what", "Patient",
         "Identifier of the patient (agent or entity)"),
        ("agent", "reference", "AuditEvent.agent.who",
         "Practitioner Organization Device Patient PractitionerRole RelatedPerson", "Identifier of who"),
        ("entity", "reference", "AuditEvent.entity.what", "", "Specific instance of resource"),
        ("date", "date", "AuditEvent.recorded", "", "Time when the event was recorded"),
        ("type", "token", "AuditEvent.type", "", "Type/identifier of event"),
        ("subtype", "token", "AuditEvent.subtype", "", "More specific type/id for the event"),
        ("action", "token", "AuditEvent.action", "", "Type of action performed during the event"),
        ("outcome", "token", "AuditEvent.outcome", "", "Whether the event succeeded or failed"),
        ("source", "reference", "AuditEvent.source.observer",
         "Practitioner Organization Device Patient PractitionerRole RelatedPerson", "The identity of source"),
    ),
}
# fmt: on


def _build() -> dict[str, Mapping[str, SearchParam]]:
    out: dict[str, Mapping[str, SearchParam]] = {}
    for rtype, rows in _TABLE.items():
        params = {
            name: SearchParam(
                name, ptype, rtype, tuple(p.strip() for p in paths.split("|")), tuple(targets.split()), desc
            )
            for name, ptype, paths, targets, desc in rows
        }
        out[rtype] = MappingProxyType(params)
    return out


_PARAMS: Final[dict[str, Mapping[str, SearchParam]]] = _build()
_EMPTY: Final[Mapping[str, SearchParam]] = MappingProxyType({})

#: Resource types this server knows (Binary has no parameter but the common _id/_lastUpdated).
KNOWN_TYPES: Final[frozenset[str]] = frozenset(_PARAMS)


def params_for(resource_type: str) -> Mapping[str, SearchParam]:
    """The search parameters of `resource_type` by name; an empty mapping for an unknown type."""
    return _PARAMS.get(resource_type, _EMPTY)


# --------------------------------------------------------------------------------------------------
# Extracted values
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenValue:
    param: str
    system: str | None
    code: str


@dataclass(frozen=True, slots=True)
class StringValue:
    param: str
    normalized: str
    exact: str


@dataclass(frozen=True, slots=True)
class DateValue:
    """A half-open UTC range [low, high)."""

    param: str
    low: datetime
    high: datetime


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    param: str
    target_type: str
    target_id: str


@dataclass(frozen=True, slots=True)
class QuantityValue:
    param: str
    value: Decimal
    system: str | None
    code: str | None
    unit: str | None


@dataclass(frozen=True, slots=True)
class NumberValue:
    param: str
    value: Decimal


@dataclass
class IndexValues:
    tokens: list[TokenValue] = field(default_factory=list)
    strings: list[StringValue] = field(default_factory=list)
    dates: list[DateValue] = field(default_factory=list)
    references: list[ReferenceValue] = field(default_factory=list)
    quantities: list[QuantityValue] = field(default_factory=list)
    numbers: list[NumberValue] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Text normalization (R4 search.html#string: matching is case- and accent-insensitive)
# --------------------------------------------------------------------------------------------------

_combining = unicodedata.combining


def normalize_text(s: str) -> str:
    """Case-fold, strip accents (NFKD, combining marks removed) and collapse whitespace."""
    if s.isascii():
        return " ".join(s.lower().split())
    # Decompose before case folding (compatibility forms like "𝐀" are upper case once decomposed), and
    # after: case folding can itself produce decomposable text ("İ" -> "i̇").
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", s).casefold())
    return " ".join("".join(c for c in decomposed if not _combining(c)).split())


# --------------------------------------------------------------------------------------------------
# Dates (R4 datatypes.html#dateTime, search.html#date: a value is an implicit range)
# --------------------------------------------------------------------------------------------------

UTC_MIN: Final[datetime] = datetime.min.replace(tzinfo=UTC)
UTC_MAX: Final[datetime] = datetime.max.replace(tzinfo=UTC)

_DATE_RE: Final = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?",
    re.ASCII,
)


def _to_utc(naive: datetime, offset: timedelta) -> datetime:
    try:
        return (naive - offset).replace(tzinfo=UTC)
    except OverflowError:  # beyond year 1 or 9999 once shifted to UTC: clamp
        return UTC_MAX if offset < timedelta(0) else UTC_MIN


def parse_date_range(text: str) -> tuple[datetime, datetime] | None:
    """The half-open UTC range [low, high) a FHIR date/dateTime/instant denotes, or None if invalid.

    The range is the precision of the value: "1980" is the whole year, "1980-05-12T10:00" one minute,
    a fraction of second its own precision (at least one microsecond).  Values without a timezone are
    read as UTC (R4 leaves that to the server, search.html#date).
    """
    m = _DATE_RE.fullmatch(text)
    if m is None:
        return None
    ys, mos, ds, hs, mis, ss, fs, tz = m.groups()
    try:
        year = int(ys)
        if mos is None:
            low = datetime(year, 1, 1)
            high = datetime(year + 1, 1, 1) if year < 9999 else datetime.max
        elif ds is None:
            month = int(mos)
            low = datetime(year, month, 1)
            if month == 12:
                high = datetime(year + 1, 1, 1) if year < 9999 else datetime.max
            else:
                high = datetime(year, month + 1, 1)
        else:
            low = datetime(year, int(mos), int(ds))
            if hs is None:
                step = timedelta(days=1)
            else:
                low = low.replace(hour=int(hs), minute=int(mis))
                if ss is None:
                    step = timedelta(minutes=1)
                elif fs is None:
                    low = low.replace(second=int(ss))
                    step = timedelta(seconds=1)
                else:
                    digits = fs[:6]
                    low = low.replace(second=int(ss), microsecond=int(digits.ljust(6, "0")))
                    step = timedelta(microseconds=10 ** (6 - len(digits)))
            try:
                high = low + step
            except OverflowError:
                high = datetime.max
    except ValueError:  # month 13, February 30th, hour 24, year 0...
        return None
    offset = timedelta(0)
    if tz is not None and tz != "Z":
        hh, mm = int(tz[1:3]), int(tz[4:6])
        if hh > 14 or mm > 59:
            return None
        offset = timedelta(hours=hh, minutes=mm) * (-1 if tz[0] == "-" else 1)
    if offset:
        lo, hi = _to_utc(low, offset), _to_utc(high, offset)
    else:
        lo, hi = low.replace(tzinfo=UTC), high.replace(tzinfo=UTC)
    if high == datetime.max:
        hi = UTC_MAX
    if not lo < hi:
        return None
    return lo, hi


# --------------------------------------------------------------------------------------------------
# References (R4 references.html#literal)
# --------------------------------------------------------------------------------------------------

_TYPE_RE: Final = re.compile(r"[A-Z][A-Za-z]{1,63}", re.ASCII)
_ID_RE: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}", re.ASCII)


def is_valid_id(s: str) -> bool:
    """R4 datatypes.html#id: 1 to 64 letters, digits, '-' and '.'."""
    return _ID_RE.fullmatch(s) is not None


def is_type_name(s: str) -> bool:
    return _TYPE_RE.fullmatch(s) is not None


def parse_reference(ref: str) -> tuple[str, str] | None:
    """(type, id) of a literal reference "Type/id", ".../Type/id" or "...Type/id/_history/v", else None.

    Contained ("#x"), "urn:uuid:"/"urn:oid:" and any other form return None.
    """
    if not ref or ref[0] == "#" or ref.startswith("urn:"):
        return None
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2:
        return None
    rtype, rid = parts[-2], parts[-1]
    if _TYPE_RE.fullmatch(rtype) is None or _ID_RE.fullmatch(rid) is None:
        return None
    return rtype, rid


# --------------------------------------------------------------------------------------------------
# Path walking and extraction
# --------------------------------------------------------------------------------------------------

_Step = tuple[str, bool]  # (key, is a choice "x[x]")


def _compile_path(path: str) -> tuple[_Step, ...]:
    steps: list[_Step] = []
    for seg in path.split(".")[1:]:  # the first segment is the resource type
        if seg.endswith("[x]"):
            steps.append((seg[:-3], True))
        else:
            steps.append((seg, False))
    return tuple(steps)


def _walk(root: dict[str, Any], steps: tuple[_Step, ...]) -> list[Any]:
    """Values at `steps` below `root`; arrays are flattened at every step (FHIRPath semantics)."""
    key, choice = steps[0]
    if choice:
        nodes: list[Any] = [root]
        rest = steps
    else:  # fast path: most parameters read one top-level element, often absent
        first = root.get(key)
        if first is None:
            return []
        nodes = first if isinstance(first, list) else [first]
        rest = steps[1:]
    for key, choice in rest:
        nxt: list[Any] = []
        for node in nodes:
            if not isinstance(node, dict):
                continue
            if choice:
                n = len(key)
                # R4 formats.html#choice: the element name is the stem + the capitalized type name.
                for k, v in node.items():
                    if len(k) > n and k.startswith(key) and k[n].isupper():
                        if isinstance(v, list):
                            nxt.extend(v)
                        else:
                            nxt.append(v)
            else:
                v = node.get(key)
                if v is None:
                    continue
                if isinstance(v, list):
                    nxt.extend(v)
                else:
                    nxt.append(v)
        if not nxt:
            return nxt
        nodes = nxt
    return nodes


def _opt_str(v: Any) -> str | None:
    return v if isinstance(v, str) and v and "\x00" not in v else None


def _indexable(v: Any) -> TypeGuard[str]:
    """A non-empty string PostgreSQL can store: U+0000 cannot be in a text column (and no search may hold it),
    so a code with one is left out of the index rather than failing the write."""
    return isinstance(v, str) and bool(v) and "\x00" not in v


def _tokens(name: str, node: Any, contact_point: bool, out: IndexValues) -> None:
    # R4 search.html#token: which element of each data type gives the (system, code) pair.
    if isinstance(node, str):
        if _indexable(node):
            out.tokens.append(TokenValue(name, None, node))
    elif isinstance(node, bool):
        out.tokens.append(TokenValue(name, None, "true" if node else "false"))
    elif isinstance(node, dict):
        codings = node.get("coding")
        if isinstance(codings, list):  # CodeableConcept
            for c in codings:
                if isinstance(c, dict):
                    code = c.get("code")
                    if _indexable(code):
                        out.tokens.append(TokenValue(name, _opt_str(c.get("system")), code))
            return
        code = node.get("code")
        if _indexable(code):  # Coding
            out.tokens.append(TokenValue(name, _opt_str(node.get("system")), code))
            return
        value = node.get("value")
        if _indexable(value):
            if contact_point:  # ContactPoint.system is a kind (phone, email), not a namespace
                out.tokens.append(TokenValue(name, None, value))
            else:  # Identifier
                out.tokens.append(TokenValue(name, _opt_str(node.get("system")), value))


# HumanName and Address parts matched by a string parameter on the whole element (search.html#string).
_STRING_PARTS: Final = (
    "family", "given", "prefix", "suffix", "text",
    "line", "city", "district", "state", "postalCode", "country",
)  # fmt: skip


def _add_string(name: str, s: str, out: IndexValues) -> None:
    if "\x00" in s:  # PostgreSQL text cannot hold U+0000; searches refuse it too
        s = s.replace("\x00", "")
    norm = normalize_text(s)
    if norm:
        out.strings.append(StringValue(name, norm, s))


def _strings(name: str, node: Any, out: IndexValues) -> None:
    if isinstance(node, str):
        _add_string(name, node, out)
    elif isinstance(node, dict):
        for key in _STRING_PARTS:
            v = node.get(key)
            if isinstance(v, str):
                _add_string(name, v, out)
            elif isinstance(v, list):
                for item in v:
                    if isinstance(item, str):
                        _add_string(name, item, out)


def _dates(name: str, node: Any, out: IndexValues) -> None:
    if isinstance(node, str):
        r = parse_date_range(node)
        if r is not None:
            out.dates.append(DateValue(name, r[0], r[1]))
    elif isinstance(node, dict):
        # Period (R4 datatypes.html#Period): a missing end means "ongoing", a missing start "unknown".
        start, end = node.get("start"), node.get("end")
        if start is None and end is None:
            return
        low, high = UTC_MIN, UTC_MAX
        if start is not None:
            r = parse_date_range(start) if isinstance(start, str) else None
            if r is None:
                return
            low = r[0]
        if end is not None:
            r = parse_date_range(end) if isinstance(end, str) else None
            if r is None:
                return
            high = r[1]
        if low < high:
            out.dates.append(DateValue(name, low, high))


def _references(name: str, node: Any, targets: frozenset[str], out: IndexValues) -> None:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            parsed = parse_reference(ref)
            if parsed is not None and (not targets or parsed[0] in targets):
                out.references.append(ReferenceValue(name, parsed[0], parsed[1]))


def to_decimal(v: Any) -> Decimal | None:
    """A finite Decimal from a JSON number (int, float or Decimal), else None. Booleans are not numbers."""
    if isinstance(v, bool):
        return None
    try:
        if isinstance(v, int):
            if v.bit_length() > 400:
                return None
            d = Decimal(v)
        elif isinstance(v, float):
            d = Decimal(repr(v))  # repr keeps the shortest round-trip form: 0.1 -> Decimal("0.1")
        elif isinstance(v, Decimal):
            d = v
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def _quantities(name: str, node: Any, out: IndexValues) -> None:
    if isinstance(node, dict):
        d = to_decimal(node.get("value"))
        if d is not None:
            out.quantities.append(
                QuantityValue(
                    name,
                    d,
                    _opt_str(node.get("system")),
                    _opt_str(node.get("code")),
                    _opt_str(node.get("unit")),
                )
            )


def _numbers(name: str, node: Any, out: IndexValues) -> None:
    d = to_decimal(node)
    if d is not None:
        out.numbers.append(NumberValue(name, d))


_Extractor = Callable[[Any, IndexValues], None]


def _extractor(p: SearchParam, path: str) -> _Extractor:
    name = p.name
    if p.type == "token" or p.type == "uri":  # a uri is matched exactly: index it as a system-less token
        contact_point = path.endswith(".telecom")
        return lambda node, out: _tokens(name, node, contact_point, out)
    if p.type == "string":
        return lambda node, out: _strings(name, node, out)
    if p.type == "date":
        return lambda node, out: _dates(name, node, out)
    if p.type == "reference":
        targets = frozenset(p.targets)
        return lambda node, out: _references(name, node, targets, out)
    if p.type == "quantity":
        return lambda node, out: _quantities(name, node, out)
    return lambda node, out: _numbers(name, node, out)


_PLANS: Final[dict[str, tuple[tuple[tuple[_Step, ...], _Extractor], ...]]] = {
    rtype: tuple((_compile_path(path), _extractor(p, path)) for p in params.values() for path in p.paths)
    for rtype, params in _PARAMS.items()
}


def _dedupe(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


#: Internal index (not a search parameter: parse() does not know it): the Binary a DocumentReference's
#: content points at, so that the access policy reaches a document's content exactly when it reaches the
#: document (storage/visibility.py).
ATTACHMENT_PARAM = "attachment"


def _attachments(root: Mapping[str, Any], out: IndexValues) -> None:
    contents = root.get("content")
    for content in contents if isinstance(contents, list) else ():
        attachment = content.get("attachment") if isinstance(content, dict) else None
        url = attachment.get("url") if isinstance(attachment, dict) else None
        parsed = parse_reference(url) if isinstance(url, str) else None
        if parsed is not None and parsed[0] == "Binary":
            out.references.append(ReferenceValue(ATTACHMENT_PARAM, "Binary", parsed[1]))


def extract(resource: Mapping[str, Any]) -> IndexValues:
    """Every search value of `resource` (by its resourceType), deduplicated; unknown types give nothing."""
    out = IndexValues()
    rtype = resource.get("resourceType")
    plan = _PLANS.get(rtype) if isinstance(rtype, str) else None
    if not plan:
        return out
    root = resource if isinstance(resource, dict) else dict(resource)
    for steps, fn in plan:
        for node in _walk(root, steps):
            fn(node, out)
    if rtype == "DocumentReference":
        _attachments(root, out)
    out.tokens = _dedupe(out.tokens)
    out.strings = _dedupe(out.strings)
    out.dates = _dedupe(out.dates)
    out.references = _dedupe(out.references)
    out.quantities = _dedupe(out.quantities)
    out.numbers = _dedupe(out.numbers)
    return out
