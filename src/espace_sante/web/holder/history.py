"""« Historique des accès »: the holder's right to see every access to her record (L1111-19 II, R1111-43), as a
page, in French or English.

`GET /mon-espace/historique` lists the trace of the space the holder's pages are about (hers, or a child's she
represents: web/holder/whose.py), newest first, each record in plain words with who, on what basis, and when;
a refusal says so. Filters (what happened, over which period) and paging are parameters of the very search the
API answers (`record/auditevents.history`: `GET /fhir/AuditEvent?patient=…`), which also records her reading
once per page, never once per row. A page keeps the snapshot of the first (`_upto`): the records written while
she pages (her own readings among them) do not shift the pages."""

from __future__ import annotations

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
from espace_sante.record import auditevents
from espace_sante.record.resources import SearchResult
from espace_sante.web import i18n
from espace_sante.web.holder import space
from espace_sante.web.holder.whose import Whose, holder_whose
from espace_sante.web.portal import PageRefused, portal_router
from espace_sante.web.templating import render

HISTORY = "/mon-espace/historique"
DOWNLOAD = f"{HISTORY}/telecharger"
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


def _filters(kind: str, period: str) -> list[tuple[str, str]]:
    """The AuditEvent search parameters of the filters chosen."""
    pairs = list(KINDS[kind])
    days = PERIODS[period]
    if days is not None:
        pairs.append(("date", f"ge{(datetime.now(UTC) - timedelta(days=days)).date().isoformat()}"))
    return pairs


async def _read(w: Whose, pairs: list[tuple[str, str]]) -> tuple[SearchResult, str]:
    """A page of the space's history and its snapshot (`_upto`), or the page saying there is none."""
    found = await auditevents.history(w.ctx, w.space_id, pairs)
    if found is None:
        raise PageRefused(
            "Historique introuvable",
            "Cet espace santé n'a pas encore d'historique à montrer.",
            "This health space has no history to show yet.",
            status=404,
        )
    return found, next((v for k, v in found.request.echo if k == auditevents.UPTO), "")


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
    kind, period = _choice(request, "quoi", KINDS), _choice(request, "periode", PERIODS)
    upto, offset = _number(request, "jusqua"), _number(request, "depuis") or 0
    pairs = [*_filters(kind, period), ("_count", str(PAGE_SIZE)), ("_offset", str(offset))]
    if upto is not None:
        pairs.append((auditevents.UPTO, str(upto)))
    found, snapshot = await _read(w, pairs)
    with i18n.speaking(lang):
        lines = [line_of(m.body, lang) for m in found.matches if m.body is not None]
        labels = _labels()
        title = (
            i18n.gettext("Historique des accès à son dossier")
            if w.child
            else i18n.gettext("Historique des accès à mon dossier")
        )

    def page_url(start: int) -> str:
        query = {"quoi": kind, "periode": period, "jusqua": snapshot, "depuis": str(start)}
        return HISTORY + "?" + urlencode({k: v for k, v in query.items() if v})

    return render(
        request,
        "history.html",
        space.holder_page(w, session)
        | {
            "title": title,
            "lines": lines,
            "kind": kind,
            "period": period,
            "labels": labels,
            "older": page_url(offset + PAGE_SIZE) if found.has_next else "",
            "newer": page_url(max(offset - PAGE_SIZE, 0)) if offset > 0 else "",
            "first": offset == 0,
            "download": DOWNLOAD
            + "?"
            + urlencode({k: v for k, v in {"quoi": kind, "periode": period}.items() if v}),
        },
        translated=True,
    )


#: The download: every record the filters select, in pages of this size (each page one reading in the trace).
DOWNLOAD_PAGE = 200
#: A download stops here (a century of a busy record); the page says to narrow the period beyond.
DOWNLOAD_MAX = 50_000


@router.get(DOWNLOAD)
async def history_download(request: Request) -> Response:
    """The history the filters select, as CSV (UTF-8 with a byte order mark, so that a spreadsheet opens the
    accents right): when, whether the access was refused, and the sentence of the page, in her language."""
    _session, w = await holder_whose(request, HISTORY)
    lang = i18n.negotiate(request)
    kind, period = _choice(request, "quoi", KINDS), _choice(request, "periode", PERIODS)
    base = _filters(kind, period)
    first, snapshot = await _read(w, [*base, ("_count", str(DOWNLOAD_PAGE))])
    with i18n.speaking(lang):
        header = [i18n.gettext("Date"), i18n.gettext("Résultat"), i18n.gettext("Description")]
        words = {False: i18n.gettext("Autorisé"), True: i18n.gettext("Refusé")}
        name = i18n.gettext("historique-des-acces")
        cut = i18n.gettext(
            "Le fichier s'arrête ici (%(n)s accès) : choisissez une période plus courte pour la suite."
        ) % {"n": DOWNLOAD_MAX}
        failed = i18n.gettext(
            "Le fichier est incomplet : le service n'a pas pu lire la suite. Réessayez plus tard."
        )

    async def rows() -> AsyncIterator[bytes]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        yield ("\ufeff" + out.getvalue()).encode()
        found: SearchResult | None = first
        offset = 0
        while found is not None:
            out.seek(0)
            out.truncate()
            for match in found.matches:
                if match.body is None:
                    continue
                line = line_of(match.body, lang)
                writer.writerow([_recorded(match.body), words[line.refused], line.sentence])
            yield out.getvalue().encode()
            offset += DOWNLOAD_PAGE
            if not found.has_next:
                return
            if offset >= DOWNLOAD_MAX:
                yield _row(["", "", cut])
                return
            more = [
                *base,
                ("_count", str(DOWNLOAD_PAGE)),
                ("_offset", str(offset)),
                (auditevents.UPTO, snapshot),
            ]
            try:
                found = await auditevents.history(w.ctx, w.space_id, more)
            except Exception:
                # The response has started: the file says it is incomplete rather than end quietly.
                yield _row(["", "", failed])
                raise

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
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
