"""The composition root: builds the ASGI app from Settings. `create_app()` is what uvicorn serves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from espace_sante import __version__
from espace_sante.api import errors, health
from espace_sante.api.access.routes import router as access_router
from espace_sante.api.fhir.routes import router as fhir_router
from espace_sante.api.middleware import RequestGuard
from espace_sante.api.oauth.routes import router as oauth_router
from espace_sante.api.spaces.routes import router as spaces_router
from espace_sante.jobs import documents as documents_job
from espace_sante.jobs import seal
from espace_sante.logs import configure
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.web.account.apps import router as oauth_pages
from espace_sante.web.account.signin import install as install_web_auth
from espace_sante.web.activation.pages import router as activation_pages
from espace_sante.web.holder.documents import install_documents_pages
from espace_sante.web.holder.history import install_history_page
from espace_sante.web.holder.notifications import install_notification_pages
from espace_sante.web.holder.sharing import install_sharing_pages
from espace_sante.web.holder.space import install_space_page
from espace_sante.web.home import install_home
from espace_sante.web.portal import error_page


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The app. With `runtime` given (tests), the caller owns it; otherwise the lifespan opens and closes one."""
    settings = settings or (runtime.settings if runtime else Settings())
    configure(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            app.state.runtime = runtime
            yield
            return
        rt = await Runtime.open(settings)
        app.state.runtime = rt
        stop = asyncio.Event()
        timers = []
        if settings.audit_seal_interval_seconds > 0:
            timers.append(asyncio.create_task(seal.run(rt, settings.audit_seal_interval_seconds, stop)))
        if settings.documents_job_interval_seconds > 0:
            timers.append(
                asyncio.create_task(documents_job.run(rt, settings.documents_job_interval_seconds, stop))
            )
        try:
            yield
        finally:
            stop.set()
            for timer in timers:
                await timer
            await rt.close()

    app = FastAPI(
        title="espace-sante",
        version=__version__,
        description="A national personal health space: FHIR R4 API with SMART on FHIR authorization.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads from a CDN: refused by our CSP and by SECURITY 14.2.3
        redoc_url=None,
        redirect_slashes=False,
    )
    if runtime is not None:
        app.state.runtime = runtime
    errors.install(app, pages=error_page)  # a browser lost under the portal gets a page
    app.include_router(health.router)
    app.include_router(oauth_router)
    app.include_router(fhir_router)
    install_home(app)  # / (what the service is, the ways in) and the language switch
    install_web_auth(app)  # sign-in and account security pages, /static
    install_documents_pages(app)  # the holder's « Mes documents » pages
    install_history_page(app)  # the holder's « Historique des accès »
    install_sharing_pages(app)  # the holder's « Qui peut voir mon dossier »
    install_notification_pages(app)  # the holder's « Mes notifications »
    install_space_page(app)  # the holder's « État de mon espace santé »: close, reopen, destruction, contest
    app.include_router(activation_pages)  # /activation: activate with the notice's code, or oppose
    app.include_router(oauth_pages)  # /oauth/authorize, connected apps, federated sign-in
    app.include_router(access_router)
    app.include_router(spaces_router)  # a space's lifecycle: holder and operators
    app.add_middleware(
        RequestGuard, max_body=settings.max_request_bytes, hsts=settings.base_url.startswith("https://")
    )
    if settings.trusted_proxy_list:
        # Outermost: every limit per client address (sign-in, activation) must see the person behind the
        # proxy, and only a configured proxy may say who that is (ASVS 14.5.4). uvicorn's own handling stays
        # off (cli/main.py `serve`), so that the app behaves the same under any server and in tests.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_list)
    return app
