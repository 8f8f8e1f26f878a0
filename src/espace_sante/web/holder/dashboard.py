"""The holder's home, signed in (`/`): her latest documents, the latest accesses to her record in plain words,
the state of her space, and the spaces of the children she represents; the same for a child's space when she
acts for him (web/holder/whose.py). Each part is what its own page shows, from the same services: the documents
list (`record/documents/listing`), the trace (`record/auditevents.history`, recorded as a reading of it) and the
lifecycle (`spaces/lifecycle.status`), and her notifications (`notifications.board`), what came since the start
of her previous visit marked new. Later issues add messages, appointments and reminders here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from espace_sante.notifications import board
from espace_sante.people.sessions import Session
from espace_sante.record import auditevents
from espace_sante.record.documents.listing import for_holder
from espace_sante.spaces import lifecycle
from espace_sante.web import i18n
from espace_sante.web.holder import notifications, space
from espace_sante.web.holder.documents import HOME as DOCUMENTS
from espace_sante.web.holder.documents_view import title_of
from espace_sante.web.holder.history import HISTORY, line_of
from espace_sante.web.holder.sharing import SHARING
from espace_sante.web.holder.whose import CHOOSE, Whose, holder_whose
from espace_sante.web.templating import render

#: How many of each the home shows (the rest is one link away).
LATEST = 3
NOTIFIED = 5


def _when(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return ""
    try:
        return i18n.date_text(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return ""


async def dashboard(request: Request, root: str) -> Response:
    """The page at `root` for a holder's session (web/home.py sends her here)."""
    session, w = await holder_whose(request, root, children=True)
    return await _page(request, session, w)


async def _page(request: Request, session: Session, w: Whose) -> Response:
    lang = i18n.negotiate(request)
    shown = await for_holder(w.ctx, w.space_id, count=LATEST)
    since = session.previous_visit_at
    documents = []
    for stored in shown.documents:
        if stored.body is not None:
            body = orjson.loads(stored.body)
            new = since is None or stored.last_updated > since
            documents.append({"title": title_of(body), "date": _when(body.get("date")), "new": new})
    told = await board.latest(w.ctx, w.space_id, since=since, limit=NOTIFIED) or []
    accesses = []
    if shown.patient_id:
        # What others did: her own readings of her record would fill the list at every visit.
        found = await auditevents.history(w.ctx, w.space_id, [("_count", str(LATEST))], others_only=True)
        if found is not None:
            accesses = [line_of(m.body, lang) for m in found.matches if m.body is not None]
    status = await lifecycle.status(w.ctx, w.space_id)
    fr, en = lifecycle.STATE_WORDS.get(status.state, (status.state, status.state))
    with i18n.speaking(lang):
        _ = i18n.gettext
        title = _("Espace santé de %(name)s") % {"name": w.child} if w.child else _("Mon espace santé")
        state = _("État de l'espace : %(state)s.") % {"state": en if lang == "en" else fr}
        lines = notifications.lines_of(told, w.child)
        last_visit = i18n.date_text(since) if since is not None else ""
    return render(
        request,
        "dashboard.html",
        space.holder_page(w, session)
        | {
            "title": title,
            "documents": documents,
            "notifications": lines,
            "new_count": sum(1 for n in told if n.new),
            "last_visit": last_visit,
            "notifications_url": notifications.NOTIFICATIONS,
            "accesses": accesses,
            "state": state,
            "open": shown.open,
            "children": [c for c in w.children if not c.current],
            "documents_url": DOCUMENTS,
            "history_url": HISTORY,
            "sharing_url": SHARING,
            "space_url": space.HOME,
            "choose_url": CHOOSE,
        },
    )
