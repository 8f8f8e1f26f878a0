"""Whose space the holder's pages show: her own, or that of a minor she represents (PRODUCT §2, minors).

A parent signs in as herself (docs/activation.md, "A child's space"). On « État de mon espace santé » she
sees the spaces of the children she is legal representative of (`lifecycle.represented`) and picks one
(`POST /mon-espace/pour`). From then on every holder page (the space's state and its choices, the documents)
shows that space and acts on it as `representative`, so the policy applies a representative's rules: what is
hidden from representatives stays hidden. A line at the top of each page says whose space it is, with the
way back to her own.

The choice is kept in a `__Host-` cookie that names no space: an opaque reference, keyed by her session's
secret, to one of the spaces she represents, found again in `lifecycle.represented` on each request. A
reference from another session, or to a child whose representatives' rights ended (the child turned 18),
means her own space: nothing to forge, nothing that outlives the rights. Signing out drops it."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from fastapi import FastAPI, Request
from starlette.responses import Response

from espace_sante.context import Context
from espace_sante.errors import FhirError
from espace_sante.people.sessions import Session
from espace_sante.spaces import lifecycle
from espace_sante.web import deps
from espace_sante.web.deps import SignInRequired, check_csrf, current_session, session_context
from espace_sante.web.forms import field, see_other, small_form
from espace_sante.web.i18n import N_
from espace_sante.web.i18n import gettext as _
from espace_sante.web.portal import PageRefused, portal_router

router = portal_router()  # a service error that escapes a page: the message page (web/portal.py)

COOKIE = deps.CHOICE_COOKIE
CHOOSE = "/mon-espace/pour"
#: Where the choice brings her: the chosen space's state, with its documents one link away.
SPACE_PAGE = "/mon-espace/mon-espace-sante"


@dataclass(frozen=True)
class Child:
    """One space she may switch to, as the chooser shows it."""

    ref: str
    name: str
    state: str
    current: bool


@dataclass(frozen=True)
class Whose:
    """The space the page is about and the context that acts on it."""

    ctx: Context
    space_id: uuid.UUID
    ins: str
    #: The child's name when she acts for a child; "" on her own space.
    child: str
    children: tuple[Child, ...]

    @property
    def own(self) -> bool:
        return not self.child


class NotHolder(PageRefused):
    """A professional's or an operator's session on a holder's page: these pages are not for them."""

    def __init__(self) -> None:
        super().__init__(
            N_("Page réservée au titulaire"),
            N_("Cette page montre votre propre espace santé : elle est réservée à son titulaire."),
        )


async def holder_whose(request: Request, home: str, *, children: bool = False) -> tuple[Session, Whose]:
    """The holder's session and the space her page is about. SignInRequired without a session (back to this
    address after signing in for a GET, to `home` otherwise); NotHolder for anyone else's session. With
    `children`, for a page that lists them, every child's name is read (and traced in his chain as read);
    otherwise only that of the child whose space the page shows."""
    session = await current_session(request)
    if session is None:
        raise SignInRequired(deps.here(request) if request.method == "GET" else home)
    if session.kind != "holder":
        raise NotHolder()
    ctx = await session_context(request)
    if ctx.actor.kind != "holder":
        raise NotHolder()
    return session, await whose(request, session, ctx, children=children)


def _ref(session: Session, space_id: uuid.UUID) -> str:
    return hmac.new(session.csrf_token.encode(), b"pour:" + space_id.bytes, hashlib.sha256).hexdigest()[:32]


async def whose(request: Request, session: Session, ctx: Context, *, children: bool = False) -> Whose:
    """The space this request's holder page is about (her own unless she chose a child's she represents)."""
    chosen = request.cookies.get(COOKIE, "")
    found = await lifecycle.represented(ctx, named=lambda s: children or _ref(session, s) == chosen)
    refs = [_ref(session, r.space_id) for r in found]
    listed = tuple(
        Child(ref, r.name or _("Votre enfant"), r.state, ref == chosen)
        for r, ref in zip(found, refs, strict=True)
    )
    for r, child in zip(found, listed, strict=True):
        if child.current:
            acting = Context(
                ctx.runtime, dataclasses.replace(ctx.actor, kind="representative"), request_id=ctx.request_id
            )
            return Whose(acting, r.space_id, r.ins, child.name, listed)
    return Whose(ctx, await lifecycle.space_of(ctx, None), ctx.actor.id, "", listed)


@router.post(CHOOSE)
async def choose(request: Request) -> Response:
    """Switch to a child's space (`pour` = its reference) or back to her own (`pour` empty). A form without
    its token, or naming a space she does not represent, changes nothing."""
    session = await current_session(request)
    if session is None:
        raise SignInRequired(SPACE_PAGE)
    form = await small_form(request, max_fields=4, max_part_size=1024)
    if form is None or not check_csrf(request, session, field(form, "csrf")):  # nothing to apply
        return see_other(f"{SPACE_PAGE}?message=refuse")
    wanted = field(form, "pour", 100)
    try:
        ctx = await session_context(request)
        found = await lifecycle.represented(ctx, named=lambda _: False)  # which spaces, not who
    except FhirError:
        found = []
    target = next((r for r in found if wanted and _ref(session, r.space_id) == wanted), None)
    response = see_other(
        f"{SPACE_PAGE}?message={'enfant' if target else 'moi' if not wanted else 'introuvable'}"
    )
    if target is None:
        deps.clear_cookie(response, COOKIE)
    else:
        deps.set_cookie(response, COOKIE, wanted)
    return response


def install_whose(app: FastAPI) -> None:
    app.include_router(router)
