"""What a notice says (PRODUCT section 2, docs/notices.md), without I/O: the words of a new space's notice and
of a young adult's at 18, in French then English, for an e-mail or a letter; who it goes to (`recipients`: the
holder, or a minor's representatives naming the child); and the notice rows that carry those words sealed under
the space's data key (`new_notice`, `of_age_notice`: no code in clear in the database).

No medical content is ever in a notice: only the dates, the code and how to oppose or activate."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_sante.audit.wording import MONTHS_FR
from espace_sante.crypto import open_, seal
from espace_sante.fhir.compartment import random_id
from espace_sante.spaces import identity
from espace_sante.storage import notices as store

#: The service's telephone number, as every notice prints it.
PHONE = "34 22"
_MONTHS_EN = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def day_fr(day: date) -> str:
    return f"{'1er' if day.day == 1 else day.day} {MONTHS_FR[day.month - 1]} {day.year}"


def day_en(day: date) -> str:
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


@dataclass(frozen=True)
class Person:
    """What a notice needs of a person, from their Patient (the registry's administrative data)."""

    name: str
    birth_date: str = ""
    email: str = ""
    address_line: str = ""
    postal_code: str = ""
    city: str = ""


def person_from(
    first_names: str,
    last_name: str,
    birth_date: str,
    email: str | None,
    line: str,
    postal_code: str,
    city: str,
) -> Person:
    """What `person_of` reads from the Patient the registry makes of these values, without making it."""
    return Person(
        name=f"{' '.join(first_names.split())} {last_name}".strip(),
        birth_date=birth_date,
        email=email or "",
        address_line=line,
        postal_code=postal_code,
        city=city,
    )


def person_of(body: dict[str, Any]) -> Person:
    name = identity.name_of(body)
    email = next((t.get("value", "") for t in body.get("telecom") or [] if t.get("system") == "email"), "")
    address = (body.get("address") or [{}])[0]
    return Person(
        name=name,
        birth_date=str(body.get("birthDate") or ""),
        email=str(email or ""),
        address_line=" ".join(address.get("line") or []),
        postal_code=str(address.get("postalCode") or ""),
        city=str(address.get("city") or ""),
    )


SUBJECT = "Mon espace santé : votre espace a été créé / your health space was created"
SUBJECT_CHILD = (
    "Mon espace santé : l'espace de votre enfant a été créé / your child's health space was created"
)


def paragraphs_fr(base_url: str, opens_on: date, code: str, child: str | None) -> list[str]:
    page = base_url.rstrip("/") + "/activation"
    whose = f"de l'espace de votre enfant {child}" if child else "de votre espace"
    born = "la date de naissance de votre enfant" if child else "votre date de naissance"
    return [
        (
            f"Un espace santé (Mon espace santé) a été créé pour votre enfant {child}."
            if child
            else "Votre espace santé (Mon espace santé) a été créé."
        ),
        f"Il sera ouvert le {day_fr(opens_on)}, sauf si vous vous y opposez d'ici là.",
        f"Code d'activation confidentiel : {code} (valable jusqu'au {day_fr(opens_on)}).",
        f"Pour vous opposer à la création {whose} : en ligne sur {page} avec ce code et {born} ; "
        f"par téléphone au {PHONE} ; ou à l'accueil de votre caisse d'assurance maladie.",
        f"Pour l'activer sans attendre : sur {page}, saisissez ce code et {born}, puis choisissez votre moyen "
        "de connexion.",
        "Ne communiquez jamais ce code : nos services ne vous le demanderont jamais.",
    ]


def paragraphs_en(base_url: str, opens_on: date, code: str, child: str | None) -> list[str]:
    page = base_url.rstrip("/") + "/activation"
    born = "your child's birth date" if child else "your birth date"
    return [
        (
            f"A health space (Mon espace santé) was created for your child {child}."
            if child
            else "Your health space (Mon espace santé) was created."
        ),
        f"It will open on {day_en(opens_on)}, unless you object before then.",
        f"Confidential activation code: {code} (valid until {day_en(opens_on)}).",
        f"To object: online at {page} with this code and {born}; by phone on {PHONE}; or at a counter of "
        "your health insurance office.",
        f"To activate it now: at {page}, type this code and {born}, then choose how you will sign in.",
        "Never share this code: we will never ask for it.",
    ]


def email_text(base_url: str, to_name: str, opens_on: date, code: str, child: str | None) -> str:
    fr = "\n\n".join(paragraphs_fr(base_url, opens_on, code, child))
    en = "\n\n".join(paragraphs_en(base_url, opens_on, code, child))
    return f"Bonjour {to_name},\n\n{fr}\n\nMon espace santé\n\n---\n\nHello {to_name},\n\n{en}\n"


SUBJECT_OF_AGE = "Mon espace santé : vous avez 18 ans, votre espace santé est à vous / you are 18, your health space is yours"
#: States in which a young adult's space can still be opposed (before it opens).
OPPOSABLE = frozenset({"registered", "notified"})


@dataclass(frozen=True)
class OfAge:
    """What the young adult's notice says: the code, its validity, and whether opposing is still possible."""

    code: str
    valid_until: date
    opposable: bool
    opens_on: date | None = None


def of_age_paragraphs_fr(base_url: str, o: OfAge) -> list[str]:
    page = base_url.rstrip("/") + "/activation"
    if o.opposable:
        by = f" jusqu'au {day_fr(o.opens_on)}" if o.opens_on else " tant qu'il n'est pas ouvert"
        way_out = (
            f"Vous pouvez encore vous opposer à sa création{by} : en ligne sur {page} avec ce code et votre date "
            f"de naissance ; par téléphone au {PHONE} ; ou à l'accueil de votre caisse d'assurance maladie. Une "
            "fois ouvert, vous pourrez le fermer à tout moment."
        )
    else:
        way_out = (
            "Votre espace est ouvert : il n'est plus possible de s'opposer à sa création, mais vous pouvez le "
            f"fermer à tout moment, depuis votre espace, par téléphone au {PHONE} ou à l'accueil de votre caisse "
            "d'assurance maladie."
        )
    return [
        "Vous avez 18 ans : votre espace santé (Mon espace santé) est désormais le vôtre.",
        "Vos représentants légaux n'y ont plus accès.",
        f"Code d'activation confidentiel : {o.code} (valable jusqu'au {day_fr(o.valid_until)}).",
        f"Pour l'activer : sur {page}, saisissez ce code et votre date de naissance, puis choisissez votre moyen "
        "de connexion. Si votre espace est déjà activé, vous obtenez ainsi votre propre connexion ; les "
        "documents que vos représentants ne pouvaient pas voir restent tels qu'ils étaient.",
        way_out,
        "Ne communiquez jamais ce code : nos services ne vous le demanderont jamais.",
    ]


def of_age_paragraphs_en(base_url: str, o: OfAge) -> list[str]:
    page = base_url.rstrip("/") + "/activation"
    if o.opposable:
        by = f" until {day_en(o.opens_on)}" if o.opens_on else " until it opens"
        way_out = (
            f"You may still object to its creation{by}: online at {page} with this code and your birth date; by "
            f"phone on {PHONE}; or at a counter of your health insurance office. Once it is open, you may close "
            "it at any time."
        )
    else:
        way_out = (
            "Your space is open: it is no longer possible to object to its creation, but you may close it at "
            f"any time, from your space, by phone on {PHONE} or at a counter of your health insurance office."
        )
    return [
        "You are 18: your health space (Mon espace santé) is now yours.",
        "Your legal representatives no longer have access to it.",
        f"Confidential activation code: {o.code} (valid until {day_en(o.valid_until)}).",
        f"To activate it: at {page}, type this code and your birth date, then choose how you will sign in. If "
        "your space is already active, this gives you your own sign-in; the documents your representatives "
        "could not see stay as they were.",
        way_out,
        "Never share this code: we will never ask for it.",
    ]


def of_age_text(base_url: str, to_name: str, o: OfAge) -> str:
    fr = "\n\n".join(of_age_paragraphs_fr(base_url, o))
    en = "\n\n".join(of_age_paragraphs_en(base_url, o))
    return f"Bonjour {to_name},\n\n{fr}\n\nMon espace santé\n\n---\n\nHello {to_name},\n\n{en}\n"


def _of_age_letter(to: Person, o: OfAge) -> dict[str, Any]:
    words = {
        "kind": "of_age",
        "name": to.name,
        "child": "",
        "code": o.code,
        "valid_until": o.valid_until.isoformat(),
        "opposable": o.opposable,
        "opens_on": o.opens_on.isoformat() if o.opens_on else "",
    }
    if not to.email:
        words |= {"address_line": to.address_line, "postal_code": to.postal_code, "city": to.city}
    return words


def of_age_notice(space_id: uuid.UUID, key: tuple[int, AESGCM], to: Person, o: OfAge) -> store.NewNotice:
    return _sealed_notice(space_id, key, to, SUBJECT_OF_AGE, _of_age_letter(to, o))


def _notice_aad(space_id: uuid.UUID, notice_id: uuid.UUID, key_version: int) -> bytes:
    return f"notice/{space_id}/{notice_id}/k{key_version}".encode()


def seal_notice(
    aead: AESGCM, key_version: int, space_id: uuid.UUID, notice_id: uuid.UUID, words: dict[str, Any]
) -> bytes:
    """What a notice says (name, address for a letter, dates, code) under the space's data key: a copy of
    the database shows none of it, and destroying the space's key (opposition, destruction) makes it
    unreadable."""
    return seal(aead, orjson.dumps(words), _notice_aad(space_id, notice_id, key_version))


def open_notice(
    aead: AESGCM, key_version: int, space_id: uuid.UUID, notice_id: uuid.UUID, sealed: bytes
) -> dict[str, Any]:
    words: dict[str, Any] = orjson.loads(open_(aead, sealed, _notice_aad(space_id, notice_id, key_version)))
    return words


def _letter(to: Person, opens_on: date, code: str, child: str | None) -> dict[str, Any]:
    """What a new space's notice says; a letter also carries the postal address, an e-mail does not."""
    words = {"name": to.name, "child": child or "", "opens_on": opens_on.isoformat(), "code": code}
    if not to.email:
        words |= {"address_line": to.address_line, "postal_code": to.postal_code, "city": to.city}
    return words


def recipients(holder: Person, reps: list[Person], has_reps: bool) -> list[tuple[Person, str | None]]:
    """Who gets the notice, and the child it names (None for the holder's own)."""
    if has_reps and not reps:
        # A minor whose representatives the registry does not reach: a letter to the child's address,
        # addressed to the child's legal representatives.
        to = Person(
            name=f"Aux représentants légaux de {holder.name}",
            address_line=holder.address_line,
            postal_code=holder.postal_code,
            city=holder.city,
        )
        return [(to, holder.name)]
    if reps:
        return [(r, holder.name) for r in reps]
    return [(holder, None)]


def _sealed_notice(
    space_id: uuid.UUID, key: tuple[int, AESGCM], to: Person, subject: str, words: dict[str, Any]
) -> store.NewNotice:
    """An e-mail to `to.email`, else a letter to their address: either way what it says sealed under `key`
    (the e-mail's text is rendered from it at delivery: no code in clear in the database)."""
    notice_id = random_id()
    version, aead = key
    sealed = seal_notice(aead, version, space_id, notice_id, words)
    if to.email:
        return store.NewNotice(space_id, notice_id, "email", to.email, subject, version, sealed)
    return store.NewNotice(space_id, notice_id, "letter", key_version=version, sealed=sealed)


def new_notice(
    space_id: uuid.UUID, key: tuple[int, AESGCM], to: Person, opens_on: date, code: str, child: str | None
) -> store.NewNotice:
    subject = SUBJECT_CHILD if child else SUBJECT
    return _sealed_notice(space_id, key, to, subject, _letter(to, opens_on, code, child))


def email_text_of(base_url: str, words: dict[str, Any]) -> str:
    """The text of an e-mail notice, from what it says (as sealed by _sealed_notice)."""
    if words.get("kind") == "of_age":
        return of_age_text(base_url, words["name"], _of_age_of(words))
    opens_on = date.fromisoformat(words["opens_on"])
    return email_text(base_url, words["name"], opens_on, words["code"], words["child"] or None)


def _of_age_of(words: dict[str, Any]) -> OfAge:
    opens_on = words.get("opens_on")
    return OfAge(
        words["code"],
        date.fromisoformat(words["valid_until"]),
        bool(words["opposable"]),
        date.fromisoformat(opens_on) if opens_on else None,
    )


def letter_words(letter: dict[str, Any], base_url: str) -> tuple[str, list[str]]:
    """The French title and paragraphs of a letter (a new space's notice, or a young adult's at 18)."""
    code = letter.get("code", "")
    if letter.get("kind") == "of_age":
        opens_on = letter.get("opens_on") or ""
        o = OfAge(
            code,
            date.fromisoformat(letter["valid_until"]),
            bool(letter.get("opposable")),
            date.fromisoformat(opens_on) if opens_on else None,
        )
        return SUBJECT_OF_AGE.split(" / ")[0], of_age_paragraphs_fr(base_url, o)
    child = letter.get("child") or None
    title = SUBJECT_CHILD.split(" / ")[0] if child else SUBJECT.split(" / ")[0]
    return title, paragraphs_fr(base_url, date.fromisoformat(letter["opens_on"]), code, child)
