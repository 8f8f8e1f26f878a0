"""The trace in plain words (audit/wording.py): one sentence per action and kind of data, French first, with
accents, French dates in Paris time, and the basis of each access."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from espace_sante.audit import wording
from espace_sante.audit.fhir import audit_event, parse_id
from espace_sante.fhir.validation import RESOURCE_TYPES, validate_resource
from espace_sante.storage.audit import ACTIONS, Record

WINTER = datetime(2026, 3, 3, 9, 12, tzinfo=UTC)  # 10 h 12 in Paris (UTC+1)
SPACE = uuid.UUID("0123456789abcdef0123456789abcdef")
OBS = SPACE.hex + "00112233aabbccdd"
PID = SPACE.hex + "ffeeddccbbaa9988"


def record(action: str = "resource:read", **extra: Any) -> Record:
    fields: dict[str, Any] = {
        "action": action,
        "outcome": "0",
        "actor_kind": "client",
        "actor_id": "cli_abc",
        "actor_display": "Logiciel du cabinet",
        "basis": "system scope grants Observation.r",
        "entity_type": "Observation",
        "entity_id": OBS,
        "entity_version": 2,
        "recorded_at": WINTER,
    }
    fields.update(extra)
    return Record(**fields)


def test_the_example_sentence() -> None:
    assert wording.sentence(record()) == (
        "Le logiciel « Logiciel du cabinet » a consulté votre mesure (observation) le 3 mars 2026 à 10 h 12 "
        "— base : accès système autorisé."
    )
    assert wording.sentence(record(), "en") == (
        "The software “Logiciel du cabinet” read your measurement (observation) on 3 March 2026 at 10:12 "
        "— basis: authorised system access."
    )


@pytest.mark.parametrize(
    ("action", "extra", "fr"),
    [
        ("resource:read", {}, "a consulté votre mesure (observation)"),
        ("resource:vread", {}, "a consulté la version 2 de votre mesure (observation)"),
        ("resource:history", {}, "a consulté l'historique des modifications de votre mesure (observation)"),
        (
            "resource:history",
            {"entity_id": None},
            "a consulté l'historique des modifications de vos mesures et observations",
        ),
        ("resource:create", {}, "a ajouté une mesure (observation) à votre dossier"),
        ("resource:create", {"entity_type": "Patient"}, "a ouvert votre dossier (votre identité)"),
        ("resource:update", {}, "a modifié votre mesure (observation)"),
        ("resource:delete", {}, "a supprimé votre mesure (observation)"),
        (
            "resource:search",
            {"entity_id": None, "detail": "?_count&date&identifier"},
            "a recherché parmi vos mesures et observations le 3 mars 2026 à 10 h 12 "
            "(critères : date, identifiant)",
        ),
        (
            "resource:search",
            {"entity_type": "Patient", "entity_id": None, "detail": "?birthdate&family"},
            "a recherché votre dossier le 3 mars 2026 à 10 h 12 (critères : date de naissance, nom de famille)",
        ),
        (
            "resource:search",
            {"entity_id": None, "detail": "conditional ?identifier"},
            "a vérifié l'existence de vos mesures et observations",
        ),
        (
            "resource:search",
            {"entity_type": "AuditEvent", "entity_id": None, "detail": "?patient"},
            "a consulté l'historique des accès à votre dossier",
        ),
    ],
)
def test_each_action_in_french(action: str, extra: dict[str, Any], fr: str) -> None:
    text = wording.sentence(record(action, **extra))
    assert text.startswith("Le logiciel « Logiciel du cabinet » ")
    assert fr in text, text
    assert text.endswith("— base : accès système autorisé.")
    english = wording.sentence(record(action, **extra), "en")
    assert english.startswith("The software “Logiciel du cabinet” ") and english.endswith(".")


def test_every_recorded_action_has_words() -> None:
    for action in ACTIONS:
        for lang in ("fr", "en"):
            text = wording.sentence(record(action, detail="read"), lang)  # type: ignore[arg-type]
            assert "accédé" not in text and "accessed" not in text, text


@pytest.mark.parametrize(
    ("rtype", "mine", "one"),
    [
        ("Observation", "votre mesure (observation)", "une mesure (observation)"),
        ("DocumentReference", "votre document", "un document"),
        ("Immunization", "votre vaccination", "une vaccination"),
        ("AllergyIntolerance", "votre allergie", "une allergie"),
        ("MedicationStatement", "votre traitement", "un traitement"),
        ("Condition", "votre problème de santé", "un problème de santé"),
        ("Procedure", "votre acte médical", "un acte médical"),
        ("Patient", "votre identité", None),
        ("Consent", "votre consentement", "un consentement"),
        ("Communication", "votre message", "un message"),
        ("Appointment", "votre rendez-vous", "un rendez-vous"),
        ("List", "votre lot de documents", "un lot de documents"),
        ("Binary", "le contenu de votre document", "le contenu d'un document"),
        ("RelatedPerson", "votre proche", "un proche"),
    ],
)
def test_each_kind_of_data_in_plain_french(rtype: str, mine: str, one: str | None) -> None:
    assert f"a consulté {mine} le" in wording.sentence(record(entity_type=rtype))
    assert f"a modifié {mine} le" in wording.sentence(record("resource:update", entity_type=rtype))
    if one is not None:
        assert f"a ajouté {one} à votre dossier" in wording.sentence(
            record("resource:create", entity_type=rtype)
        )


def test_every_supported_type_has_a_name() -> None:
    assert set(RESOURCE_TYPES) <= set(wording.KINDS)


def test_refusals_say_what_was_refused_and_why() -> None:
    refused = record(
        "access:refused",
        outcome="8",
        entity_id=None,
        entity_version=None,
        entity_type="DocumentReference",
        basis="no system scope for DocumentReference.r",
        detail="read",
    )
    assert wording.sentence(refused) == (
        "Le logiciel « Logiciel du cabinet » s'est vu refuser la consultation de votre document le 3 mars "
        "2026 à 10 h 12 — motif : ce logiciel n'a pas le droit correspondant."
    )
    create = wording.sentence(
        record("access:refused", outcome="8", entity_type="Immunization", detail="create", basis="x")
    )
    # A reason no version of the policy wrote is said to have no words, never shown as recorded (issue 15).
    assert "s'est vu refuser l'ajout d'une vaccination" in create
    assert "motif : raison non consignée en toutes lettres." in create
    search = wording.sentence(record("access:refused", outcome="8", detail="search"))
    assert "s'est vu refuser une recherche parmi vos mesures et observations" in search
    binary = wording.sentence(record("access:refused", outcome="8", entity_type="Binary", detail="delete"))
    assert "la suppression du contenu de votre document" in binary
    english = wording.sentence(refused, "en")
    assert "was refused reading your document" in english and "reason:" in english


def test_actors_by_kind_and_the_holder_is_you() -> None:
    assert wording.sentence(record(actor_kind="holder", actor_display="")).startswith(
        "Vous avez consulté votre mesure"
    )
    assert "Vous vous êtes vu refuser" in wording.sentence(
        record("access:refused", outcome="8", actor_kind="holder", detail="read")
    )
    assert wording.sentence(record(actor_kind="practitioner", actor_display="Dr Anne Durand, pharmacienne"))
    assert wording.sentence(
        record(actor_kind="practitioner", actor_display="Dr Anne Durand, pharmacienne")
    ).startswith("Le professionnel de santé Dr Anne Durand, pharmacienne a consulté")
    assert wording.sentence(record(actor_kind="system", basis="system actor")).startswith(
        "Le service espace santé lui-même a consulté"
    )
    assert "base : opération interne du service." in wording.sentence(record(basis="system actor"))
    assert wording.sentence(record(actor_display="")).startswith("Le logiciel « cli_abc »")
    # A basis the wording does not know is not shown as recorded (issue 15): it says it has no words.
    unknown = record(basis="équipe de soins de l'hôpital Y")
    assert "base : raison non consignée en toutes lettres." in wording.sentence(unknown)
    assert "basis: reason not recorded in words." in wording.sentence(unknown, "en")


def test_dates_are_french_and_in_paris_time() -> None:
    # 23:30 UTC in winter is 00:30 the next day in Paris (UTC+1).
    assert wording.when(datetime(2026, 1, 31, 23, 30, tzinfo=UTC)) == "le 1er février 2026 à 00 h 30"
    assert wording.when(datetime(2026, 1, 31, 23, 30, tzinfo=UTC), "en") == "on 1 February 2026 at 00:30"
    # Summer time: UTC+2.
    assert wording.when(datetime(2026, 8, 14, 22, 5, tzinfo=UTC)) == "le 15 août 2026 à 00 h 05"
    assert wording.when(datetime(2026, 12, 31, 10, 0, tzinfo=UTC)) == "le 31 décembre 2026 à 11 h 00"
    # The change to summer time (29 March 2026, 01:00 UTC).
    assert wording.when(datetime(2026, 3, 29, 0, 59, tzinfo=UTC)).endswith("à 01 h 59")
    assert wording.when(datetime(2026, 3, 29, 1, 0, tzinfo=UTC)).endswith("à 03 h 00")


def test_the_narrative_is_escaped_xhtml_and_the_event_valid_r4() -> None:
    sneaky = record(actor_display='<script>alert("x")</script> & Cie')
    event = audit_event(SPACE, 7, sneaky, patient_id=PID, base="http://127.0.0.1:8000/fhir")
    validate_resource(event, expected_type="AuditEvent")
    div = event["text"]["div"]
    assert "<script>" not in div
    assert html.escape("<script>", quote=False) in div and "&amp; Cie" in div
    assert event["id"] == f"{SPACE.hex}-7" and parse_id(event["id"]) == (SPACE, 7)
    assert len(event["id"]) <= 64
    assert event["language"] == "fr-FR"


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_renders_a_valid_audit_event(action: str) -> None:
    extra: dict[str, Any] = {"detail": "?identifier", "request_id": "0123abcd"}
    if action == "access:refused":
        extra.update(outcome="8", detail="update", entity_id=None, entity_version=None)
    if action == "resource:search":
        extra.update(entity_id=None, entity_version=None)
    event = audit_event(SPACE, 3, record(action, **extra), patient_id=PID, base="http://x.example/fhir")
    validate_resource(event, expected_type="AuditEvent")
    assert event["action"] in {"C", "R", "U", "D", "E"}
    if action == "access:refused":
        assert event["outcome"] == "8" and event["outcomeDesc"].startswith("Accès refusé")
        assert event["subtype"][0]["code"] == "update"
