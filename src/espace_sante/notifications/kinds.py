"""The kinds of notification, what she is told in each (French, then English: the e-mail goes out before we
know which language she reads) and which page it links to. No text names a document, a professional or a
child: an e-mail can be read over a shoulder or by whoever shares the mailbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from espace_sante.storage.notifications import DOCUMENT, EMERGENCY, FIRST_ACCESS, RELEASED, WAITING


@dataclass(frozen=True)
class Kind:
    code: str
    #: Whether she is told by e-mail until she chooses otherwise.
    by_email: bool
    #: The page the e-mail and the dashboard's line open.
    page: str
    subject_fr: str
    subject_en: str
    text_fr: str
    text_en: str


DOCUMENTS_PAGE: Final = "/mon-espace/documents"
HISTORY_PAGE: Final = "/mon-espace/historique"
HOME_PAGE: Final = "/"

__all__ = ["DOCUMENT", "EMERGENCY", "FIRST_ACCESS", "KINDS", "RELEASED", "WAITING", "Kind"]

KINDS: Final[tuple[Kind, ...]] = (
    Kind(
        FIRST_ACCESS,
        True,
        HISTORY_PAGE,
        "un professionnel a consulté votre dossier pour la première fois",
        "a professional opened your record for the first time",
        "Un professionnel de santé (ou le logiciel d'un établissement) a consulté pour la première fois un "
        "dossier que vous suivez : le vôtre, ou celui d'un enfant que vous représentez. L'historique des "
        "accès dit qui, quand et à quel titre.",
        "A health professional (or an establishment's software) opened a record you follow for the first "
        "time: yours, or that of a child you represent. The access history says who, when and on what basis.",
    ),
    Kind(
        EMERGENCY,
        True,
        HISTORY_PAGE,
        "accès en urgence",
        "emergency access",
        "Un professionnel a ouvert un accès en urgence à un dossier que vous suivez (le vôtre, celui d'un "
        "enfant que vous représentez, ou celui d'un patient dont vous êtes le médecin traitant). Il est limité "
        "dans le temps et inscrit dans l'historique des accès (article R1111-48 du code de la santé publique).",
        "A professional opened an emergency access to a record you follow (yours, a child's you represent, or "
        "a patient's whose médecin traitant you are). It is time-limited and listed in the access history "
        "(article R1111-48 of the French public health code).",
    ),
    Kind(
        DOCUMENT,
        False,
        DOCUMENTS_PAGE,
        "un nouveau document dans votre dossier",
        "a new document in your record",
        "Un professionnel de santé a ajouté un document à un dossier que vous suivez : le vôtre, ou celui "
        "d'un enfant que vous représentez.",
        "A health professional added a document to a record you follow: yours, or that of a child you "
        "represent.",
    ),
    Kind(
        WAITING,
        True,
        HOME_PAGE,
        "un document vous attend",
        "a document awaits you",
        "Un document de votre dossier attend une consultation avec un professionnel de santé avant d'être "
        "visible. Prenez rendez-vous avec votre médecin ou avec le professionnel qui vous suit. Sans cette "
        "consultation, le document deviendra visible dans votre espace dans deux semaines (article R1111-53 "
        "du code de la santé publique).",
        "A document in your record is waiting for a consultation with a health professional before it is "
        "shown to you. Please make an appointment with your doctor. Without that consultation, it will become "
        "visible in your space in two weeks (article R1111-53 of the French public health code).",
    ),
    Kind(
        RELEASED,
        False,
        DOCUMENTS_PAGE,
        "un document est maintenant visible",
        "a document is now visible",
        "Un document qui attendait une consultation d'annonce est maintenant visible dans votre dossier.",
        "A document that was waiting for its announcement consultation is now visible in your record.",
    ),
)
BY_CODE: Final = {k.code: k for k in KINDS}


def email_text(kind: Kind, base_url: str) -> tuple[str, str]:
    """The subject and text of the e-mail of `kind`, in French then English, linking to its page."""
    page = base_url.rstrip("/") + kind.page
    subject = f"Mon espace santé : {kind.subject_fr} / {kind.subject_en}"
    text = (
        f"Bonjour,\n\n{kind.text_fr}\n\nPour le voir, connectez-vous : {page}\n\n"
        "Vous pouvez choisir les messages que vous recevez dans « Mes notifications ». Ce message ne contient "
        "aucune information médicale ; ne répondez pas.\n\nMon espace santé\n\n---\n\n"
        f"Hello,\n\n{kind.text_en}\n\nSign in to see it: {page}\n\n"
        "You can choose which messages you receive under « Mes notifications » (My notifications). This "
        "message holds no medical information; please do not reply.\n"
    )
    return subject, text


def by_email(code: str, choices: dict[str, bool]) -> bool:
    """Whether a notification of `code` goes by e-mail, given her saved choices."""
    kind = BY_CODE.get(code)
    return choices.get(code, kind.by_email) if kind is not None else False
