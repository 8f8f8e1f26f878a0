"""« Historique des accès »: the holder's right to see every access to her record (L1111-19 II, R1111-43), as a
page, in French or English.

`GET /mon-espace/historique` lists the trace of the space the holder's pages are about (hers, or a child's she
represents: web/holder/whose.py), newest first, each record in plain words with who, on what basis, and when;
a refusal says so. Filters (what happened, over which period, which professional) and paging are parameters of
the very search the API answers (`record/auditevents.history`: `GET /fhir/AuditEvent?patient=…`, the
professional as `agent:identifier=<RPPS system>|<RPPS>`), which also records her reading once per page, never
once per row. A page keeps the snapshot of the first (`_upto`): the records written while she pages (her own
readings among them) do not shift the pages. The professionals the filter offers are those who appear in her
trace, read with the page (`record/auditevents.history_page`).

The same selection downloads as CSV (`…/telecharger`) or PDF (`…/telecharger-pdf`, laid out by
web/holder/history_pdf.py), read a page of the trace at a time by key (each from just below the last record of
the one before), each page one reading in her trace, as on the page."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response, StreamingResponse

from espace_sante import clock
from espace_sante.audit import fhir as audit_fhir
from espace_sante.audit import wording
from espace_sante.record import auditevents
from espace_sante.record.resources import SearchResult
from espace_sante.storage.resources import Stored
from espace_sante.web import i18n
from espace_sante.web.holder import history_pdf, space
from espace_sante.web.holder.whose import Whose, holder_whose
from espace_sante.web.portal import PageRefused, portal_router
from espace_sante.web.templating import render

HISTORY = "/mon-espace/historique"
DOWNLOAD = f"{HISTORY}/telecharger"
DOWNLOAD_PDF = f"{HISTORY}/telecharger-pdf"
PAGE_SIZE = 20

router = portal_router(link=HISTORY)

#: What happened, as the filter offers it: the AuditEvent search parameters each choice adds.
KINDS: dict[str, list[tuple[str, str]]] = {
    "": [],
    "consultations": [("action", f"{audit_fhir.AUDIT_EVENT_ACTION}|R,{audit_fhir.AUDIT_EVENT_ACTION}|E")],
    "modifications": [
        ("action", ",".join(f"{audit_fhir.AUDIT_EVENT_ACTION}|{code}" for code in ("C", "U", "D")))
    ],
    "refus": [("outcome", ",".join(f"{audit_fhir.AUDIT_EVENT_OUTCOME}|{code}" for code in ("4", "8", "12")))],
}
#: Over which period: days back from today (None: all of it).
PERIODS: dict[str, int | None] = {"": None, "30j": 30, "1an": 365}

_PARAGRAPH = re.compile(r'<p lang="(fr|en)" xml:lang="\1">(.*?)</p>', re.S)


def _labels() -> dict[str, dict[str, str]]:
    """The filters' choices in the page's language (built per page: the language is the page's)."""
    _ = i18n.gettext
    return {
        "quoi": {
            "": _("Tout"),
            "consultations": _("Consultations"),
            "modifications": _("Ajouts, modifications et suppressions"),
            "refus": _("Accès refusés"),
        },
        "periode": {
            "": _("Depuis l'ouverture"),
            "30j": _("Les 30 derniers jours"),
            "1an": _("La dernière année"),
        },
    }


@dataclass(frozen=True)
class Line:
    """One record as the page shows it: its sentence says who, what, when and on what basis (audit/wording.py)."""

    sentence: str
    refused: bool


def line_of(body: bytes, lang: str) -> Line:
    event: dict[str, Any] = orjson.loads(body)
    # The narrative is ours (audit/fhir.py), one paragraph per language, escaped: read back as plain text, and
    # escaped again by the template.
    paragraphs = dict(_PARAGRAPH.findall(event.get("text", {}).get("div", "")))
    sentence = html.unescape(re.sub(r"<[^>]+>", "", paragraphs.get(lang) or paragraphs.get("fr", "")))
    return Line(sentence=sentence, refused=str(event.get("outcome", "0")) != "0")


@dataclass(frozen=True)
class Chosen:
    """The filters of a request, as read from its query string (anything else is "no filter")."""

    kind: str
    period: str
    #: The RPPS of the professional chosen, or "".
    professional: str

    def query(self) -> dict[str, str]:
        """The filters as link parameters (those set only)."""
        named = {"quoi": self.kind, "periode": self.period, "professionnel": self.professional}
        return {k: v for k, v in named.items() if v}

    def pairs(self) -> list[tuple[str, str]]:
        """The AuditEvent search parameters of the filters chosen."""
        pairs = list(KINDS[self.kind])
        days = PERIODS[self.period]
        if days is not None:
            pairs.append(("date", f"ge{(datetime.now(UTC) - timedelta(days=days)).date().isoformat()}"))
        if self.professional:
            pairs.append(auditevents.by_professional(self.professional))
        return pairs


def _chosen(request: Request) -> Chosen:
    rpps = request.query_params.get("professionnel", "")
    # An RPPS is eleven digits; anything that cannot be an actor's id is no filter rather than an error.
    valid = rpps.isascii() and rpps.isdigit() and len(rpps) <= 20
    return Chosen(
        _choice(request, "quoi", KINDS), _choice(request, "periode", PERIODS), rpps if valid else ""
    )


def _none() -> PageRefused:
    return PageRefused(
        "Historique introuvable",
        "Cet espace santé n'a pas encore d'historique à montrer.",
        "This health space has no history to show yet.",
        status=404,
    )


def _snapshot(found: SearchResult) -> str:
    return next((v for k, v in found.request.echo if k == auditevents.UPTO), "")


async def _read(w: Whose, pairs: list[tuple[str, str]]) -> SearchResult:
    """A page of the space's history, or the page saying there is none."""
    found = await auditevents.history(w.ctx, w.space_id, pairs)
    if found is None:
        raise _none()
    return found


async def _read_page(w: Whose, pairs: list[tuple[str, str]]) -> auditevents.HistoryPage:
    """A page of the space's history with the professionals who appear in it, or the page saying there is
    none."""
    found = await auditevents.history_page(w.ctx, w.space_id, pairs)
    if found is None:
        raise _none()
    return found


def _professional_label(p: auditevents.Professional) -> str:
    # The RPPS tells apart two professionals of the same name; the name is as the trace last recorded it.
    return f"{p.name} (RPPS {p.rpps})" if p.name else f"RPPS {p.rpps}"


def _professionals(page: auditevents.HistoryPage, chosen: str) -> list[tuple[str, str]]:
    """The filter's choices: the professionals of her trace, and the one chosen even when he is not among
    them (a link from another snapshot), so that the select says what the list shows."""
    choices = [(p.rpps, _professional_label(p)) for p in page.professionals]
    if chosen and chosen not in {value for value, _ in choices}:
        choices.append((chosen, f"RPPS {chosen}"))
    return choices


def _choice(request: Request, name: str, allowed: dict[str, Any]) -> str:
    value = request.query_params.get(name, "")
    return value if value in allowed else ""


def _number(request: Request, name: str) -> int | None:
    value = request.query_params.get(name, "")
    return int(value) if value.isdigit() and len(value) < 15 else None


@router.get(HISTORY)
async def history_page(request: Request) -> Response:
    session, w = await holder_whose(request, HISTORY)
    lang = i18n.negotiate(request)
    chosen = _chosen(request)
    upto, offset = _number(request, "jusqua"), _number(request, "depuis") or 0
    pairs = [*chosen.pairs(), ("_count", str(PAGE_SIZE)), ("_offset", str(offset))]
    if upto is not None:
        pairs.append((auditevents.UPTO, str(upto)))
    page = await _read_page(w, pairs)
    found, snapshot = page.found, _snapshot(page.found)
    with i18n.speaking(lang):
        lines = [line_of(m.body, lang) for m in found.matches if m.body is not None]
        labels = _labels()
        title = (
            i18n.gettext("Historique des accès à son dossier")
            if w.child
            else i18n.gettext("Historique des accès à mon dossier")
        )

    def page_url(start: int) -> str:
        query = {**chosen.query(), "jusqua": snapshot, "depuis": str(start)}
        return HISTORY + "?" + urlencode({k: v for k, v in query.items() if v})

    return render(
        request,
        "history.html",
        space.holder_page(w, session)
        | {
            "title": title,
            "lines": lines,
            "kind": chosen.kind,
            "period": chosen.period,
            "professional": chosen.professional,
            "professionals": _professionals(page, chosen.professional),
            "labels": labels,
            "older": page_url(offset + PAGE_SIZE) if found.has_next else "",
            "newer": page_url(max(offset - PAGE_SIZE, 0)) if offset > 0 else "",
            "first": offset == 0,
            "download": DOWNLOAD + "?" + urlencode(chosen.query()),
            "download_pdf": DOWNLOAD_PDF + "?" + urlencode(chosen.query()),
        },
    )


#: The download: every record the filters select, in pages of this size (each page one reading in the trace).
DOWNLOAD_PAGE = 200
#: A download stops here (a century of a busy record); the page says to narrow the period beyond.
DOWNLOAD_MAX = 50_000


@dataclass
class _Download:
    """Every record a download's filters select, from its first page on, a page at a time by key."""

    w: Whose
    base: list[tuple[str, str]]
    first: SearchResult
    #: Set once the pages stopped at DOWNLOAD_MAX with records left.
    cut: bool = False

    async def pages(self) -> AsyncIterator[list[Stored]]:
        """Each page starts just below the last record of the one before (`_upto` = its position - 1): the
        pages stay on the first one's snapshot, and a page of a long download costs what the first does,
        where an `_offset` would make each one skip every record already written out."""
        found: SearchResult | None = self.first
        read = 0
        while found is not None:
            yield found.matches
            read += len(found.matches)
            last = audit_fhir.parse_id(found.matches[-1].resource_id) if found.matches else None
            if not found.has_next or last is None:
                return
            if read >= DOWNLOAD_MAX:
                self.cut = True
                return
            more = [*self.base, ("_count", str(DOWNLOAD_PAGE)), (auditevents.UPTO, str(last[1] - 1))]
            found = await auditevents.history(self.w.ctx, self.w.space_id, more)


def _cut_words() -> str:
    return i18n.gettext(
        "Le fichier s'arrête ici (%(n)s accès) : choisissez une période plus courte pour la suite."
    ) % {"n": DOWNLOAD_MAX}


def _attachment(name: str) -> dict[str, str]:
    return {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


@router.get(DOWNLOAD)
async def history_download(request: Request) -> Response:
    """The history the filters select, as CSV (UTF-8 with a byte order mark, so that a spreadsheet opens the
    accents right): when, whether the access was refused, and the sentence of the page, in her language."""
    _session, w = await holder_whose(request, HISTORY)
    lang = i18n.negotiate(request)
    base = _chosen(request).pairs()
    download = _Download(w, base, await _read(w, [*base, ("_count", str(DOWNLOAD_PAGE))]))
    with i18n.speaking(lang):
        header = [i18n.gettext("Date"), i18n.gettext("Résultat"), i18n.gettext("Description")]
        words = {False: i18n.gettext("Autorisé"), True: i18n.gettext("Refusé")}
        name = i18n.gettext("historique-des-acces")
        cut = _cut_words()
        failed = i18n.gettext(
            "Le fichier est incomplet : le service n'a pas pu lire la suite. Réessayez plus tard."
        )

    async def rows() -> AsyncIterator[bytes]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        yield ("\ufeff" + out.getvalue()).encode()
        pages = download.pages()
        while True:
            try:
                matches = await anext(pages)
            except StopAsyncIteration:
                break
            except Exception:
                # The response has started: the file says it is incomplete rather than end quietly.
                yield _row(["", "", failed])
                raise
            out.seek(0)
            out.truncate()
            for match in matches:
                if match.body is None:
                    continue
                line = line_of(match.body, lang)
                writer.writerow([_recorded(match.body), words[line.refused], line.sentence])
            yield out.getvalue().encode()
        if download.cut:
            yield _row(["", "", cut])

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers=_attachment(f"{name}.csv"))


@router.get(DOWNLOAD_PDF)
async def history_download_pdf(request: Request) -> Response:
    """The history the filters select, as PDF in her language: the page's title, the filters, then each
    record's sentence as the page shows it (history_pdf.py). Built whole before it is sent, so a failure is
    the error page, never half a file."""
    _session, w = await holder_whose(request, HISTORY)
    lang = i18n.negotiate(request)
    chosen = _chosen(request)
    base = chosen.pairs()
    first = await _read_page(w, [*base, ("_count", str(DOWNLOAD_PAGE))])
    download = _Download(w, base, first.found)
    entries: list[tuple[bool, str]] = []
    async for matches in download.pages():
        for match in matches:
            if match.body is not None:
                line = line_of(match.body, lang)
                entries.append((line.refused, line.sentence))
    with i18n.speaking(lang):
        words = _pdf_words(w, lang, chosen, first, cut=download.cut)
        name = i18n.gettext("historique-des-acces")
    # Laying out thousands of lines is CPU work: off the event loop.
    content = await asyncio.to_thread(history_pdf.render, words, entries)
    return Response(content, media_type="application/pdf", headers=_attachment(f"{name}.pdf"))


def _pdf_words(
    w: Whose, lang: str, chosen: Chosen, page: auditevents.HistoryPage, *, cut: bool
) -> history_pdf.Words:
    """What the PDF says around its entries, in the language `i18n.speaking` set."""
    _ = i18n.gettext
    labels = _labels()
    field = _("%(label)s : %(value)s")
    heading = [_("Espace de %(name)s") % {"name": w.child}] if w.child else []
    made = wording.when(datetime.now(UTC), "en" if lang == "en" else "fr")
    heading.append(_("Historique établi %(when)s.") % {"when": made})
    heading.append(field % {"label": _("Ce qui s'est passé"), "value": labels["quoi"][chosen.kind]})
    heading.append(field % {"label": _("Période"), "value": labels["periode"][chosen.period]})
    if chosen.professional:
        choices = dict(_professionals(page, chosen.professional))
        heading.append(field % {"label": _("Professionnel"), "value": choices[chosen.professional]})
    closing = [_cut_words()] if cut else []
    closing.append(
        _(
            "La loi vous donne le droit de connaître chaque accès à votre dossier (article L1111-19 du code de "
            "la santé publique). Consulter cet historique y est lui-même inscrit."
        )
    )
    page_words = _("Page %(n)s")
    return history_pdf.Words(
        lang=lang,
        title=_("Historique des accès à son dossier") if w.child else _("Historique des accès à mon dossier"),
        author="Mon espace santé",
        heading=heading,
        refused=_("Accès refusé"),
        empty=_("Aucun accès ne correspond à ces critères."),
        closing=closing,
        page=lambda n: page_words % {"n": n},
    )


def _row(cells: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(cells)
    return out.getvalue().encode()


def _recorded(body: bytes) -> str:
    """When, to the second, in French time with its offset (ISO 8601: a spreadsheet reads it)."""
    recorded = datetime.fromisoformat(str(orjson.loads(body)["recorded"]))
    return recorded.astimezone(clock.FRANCE).isoformat(timespec="seconds")


def install_history_page(app: FastAPI) -> None:
    app.include_router(router)
