"""The `espace-sante` command line. Every command takes `--data-dir` (or ESPACE_SANTE_DATA_DIR) and honours
DATABASE_URL; every command works while `serve` runs on the same data folder (they share its PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from espace_sante.cli import accounts as accounts_cli
from espace_sante.cli import common
from espace_sante.cli.documents import documents_app
from espace_sante.cli.legacy import legacy_app
from espace_sante.cli.lifecycle import lifecycle_app
from espace_sante.cli.notices import letters_app, notices_app, outbox_app
from espace_sante.cli.opposition import opposition_app
from espace_sante.cli.registry import registry_app
from espace_sante.cli.tokens import token_app
from espace_sante.cli.worker import worker

T = TypeVar("T")

app = typer.Typer(
    help="espace-sante: espace numérique de santé / personal health space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
keys_app = typer.Typer(help="Clés de chiffrement / encryption keys.", no_args_is_help=True)
client_app = typer.Typer(help="Clients machine (OAuth 2) / machine clients.", no_args_is_help=True)
app.add_typer(client_app, name="client")
app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(help="Trace des accès / audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(accounts_cli.app, name="account")  # sign-in accounts (cli/accounts.py)
app.add_typer(token_app, name="token")
app.add_typer(registry_app, name="registry")
app.add_typer(documents_app, name="documents")
app.add_typer(legacy_app, name="legacy")  # the legacy DMP's XDM export (cli/legacy.py)
app.add_typer(lifecycle_app, name="lifecycle")  # states of spaces (cli/lifecycle.py)
app.add_typer(opposition_app, name="opposition")  # proofs of opposition (cli/opposition.py)
app.add_typer(notices_app, name="notices")  # notices of new spaces (cli/notices.py)
app.add_typer(letters_app, name="letters")
app.add_typer(outbox_app, name="outbox")
app.command()(worker)  # background jobs (cli/worker.py, docs/jobs.md)


@app.callback()
def main_options(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="ESPACE_SANTE_DATA_DIR",
            help="Dossier des données (PostgreSQL embarqué, clés).",
        ),
    ] = None,
) -> None:
    if data_dir is not None:
        # Through the environment, so that uvicorn's worker processes see the same folder.
        os.environ["ESPACE_SANTE_DATA_DIR"] = str(data_dir.resolve())


@app.command()
def migrate() -> None:
    """Applique les migrations de la base / apply database migrations."""
    from espace_sante.runtime import Runtime
    from espace_sante.storage import migrate as migrations

    async def work(rt: Runtime) -> list[migrations.Migration]:
        return await migrations.migrate(rt.db.dsn)

    done = common.run(lambda: common.with_runtime(common.settings(), work, migrate=False))
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in done)
    typer.echo(f"{len(done)} migration(s) applied: {names}" if done else "schema is current")


@app.command()
def demo() -> None:
    """Charge les données de démonstration (idempotent) / load demo data (idempotent)."""
    from espace_sante.demo import world as demo_data

    settings = common.settings()
    try:
        demo_data.refuse_outside_development(settings)  # before the data folder is marked as a demo's
    except demo_data.DemoRefused as exc:
        raise common.fail(str(exc)) from None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.dev_marker.touch()
    counts = common.run(lambda: common.with_runtime(settings, demo_data.load))
    typer.echo(f"demo data: {counts['created']} created, {counts['unchanged']} already there")


@client_app.command("create")
def client_create(
    name: Annotated[str, typer.Option(help="Nom du logiciel client / client software name.")],
    scope: Annotated[
        str, typer.Option(help='Portées SMART, ex. "system/*.*" / SMART scopes.')
    ] = "system/*.read",
    as_json: Annotated[bool, typer.Option("--json", help='Affiche {"client_id", "client_secret"}.')] = False,
    jwks: Annotated[
        Path | None,
        typer.Option("--jwks", help="JWKS public (fichier JSON) : private_key_jwt / public JWKS file."),
    ] = None,
    jwks_uri: Annotated[
        str | None, typer.Option("--jwks-uri", help="Adresse https du JWKS / https JWKS URL.")
    ] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="system, app (titulaire) ou software (professionnel).")
    ] = "system",
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option("--redirect-uri", help="Adresse de retour exacte (répétable) / redirect URI."),
    ] = None,
    public: Annotated[
        bool, typer.Option("--public", help="Application publique (PKCE seul) / public app.")
    ] = False,
) -> None:
    """Enregistre un client machine et affiche ses identifiants une seule fois / register a machine client."""
    from espace_sante.oauth import clients as oauth_clients

    settings = common.settings()
    if jwks or jwks_uri or kind != "system" or redirect_uri or public:
        try:
            keys = json.loads(jwks.read_text(encoding="utf-8")) if jwks else None
        except (OSError, ValueError) as exc:
            raise common.fail(f"--jwks : fichier illisible / unreadable file: {exc}") from None
        registered = common.run(
            lambda: common.with_runtime(
                settings,
                lambda rt: oauth_clients.register_client(
                    rt,
                    name,
                    scope,
                    kind=kind,
                    jwks=keys,
                    jwks_uri=jwks_uri,
                    redirect_uris=tuple(redirect_uri or ()),
                    public=public,
                ),
            )
        )
        if as_json:
            typer.echo(
                json.dumps({"client_id": registered.client_id, "client_secret": registered.client_secret})
            )
            return
        typer.echo(
            f"client_id:     {registered.client_id}\nkind:          {registered.kind}\nauth:          "
            f"{registered.auth_method}\nscope:         {registered.scope}"
            + (
                f"\nclient_secret: {registered.client_secret}\nLe secret ne sera plus affiché / the secret will "
                "not be shown again."
                if registered.client_secret
                else ""
            )
        )
        return
    client = common.run(
        lambda: common.with_runtime(settings, lambda rt: oauth_clients.create_client(rt, name, scope))
    )
    if as_json:
        typer.echo(json.dumps({"client_id": client.client_id, "client_secret": client.client_secret}))
        return
    typer.echo(
        f"client_id:     {client.client_id}\nclient_secret: {client.client_secret}\nscope:         "
        f"{client.scope}\nLe secret ne sera plus affiché / the secret will not be shown again."
    )


@keys_app.command("rewrap")
def keys_rewrap() -> None:
    """Rechiffre les clés de données sous la KEK courante / rewrap data keys under the current KEK.

    Rotation: set the new key in ESPACE_SANTE_KEK and the old one in ESPACE_SANTE_KEK_PREVIOUS, run this, then
    drop the old key from the configuration."""
    from espace_sante.runtime import Runtime

    async def work(rt: Runtime) -> int:
        return await rt.db.interaction("keys_rewrap", rt.keys.rewrap)

    count = common.run(lambda: common.with_runtime(common.settings(), work))
    typer.echo(f"{count} data key(s) rewrapped")


@audit_app.command("seal")
def audit_seal() -> None:
    """Scelle (signe) les têtes de chaîne qui ont avancé / sign the chain heads that moved since their last seal.

    Run it periodically (a timer): a rewrite of the trace by someone with database access shows up at the
    first seal after the rewritten records."""
    from espace_sante.audit import chains as audit
    from espace_sante.runtime import Runtime

    async def work(rt: Runtime) -> int:
        return await audit.seal_heads(rt)

    count = common.run(lambda: common.with_runtime(common.settings(), work))
    typer.echo(f"{count} tête(s) de chaîne scellée(s) / chain head(s) sealed")


@audit_app.command("verify")
def audit_verify(
    space: Annotated[
        str | None, typer.Option("--space", help="Un seul espace (UUID) / one space only (UUID).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Rapport en JSON / JSON report.")] = False,
) -> None:
    """Vérifie la trace : chaînes, têtes et sceaux / check the trace: chains, heads and seals.

    Sort avec 0 si tout est intact, 1 si un maillon est rompu (le premier de chaque espace est nommé) /
    exits 0 when intact, 1 when a link is broken (the first broken link of each space is named)."""
    from espace_sante.audit import chains as audit
    from espace_sante.audit.verify import Report, SpaceReport
    from espace_sante.runtime import Runtime

    space_id = None
    if space is not None:
        try:
            space_id = uuid.UUID(space)
        except ValueError:
            raise common.fail(
                f"--space : « {space} » n'est pas un identifiant d'espace (UUID attendu) / "
                "is not a space id (a UUID)"
            ) from None

    def show(result: SpaceReport) -> None:
        # Printed as found, so that an operator checking millions of spaces sees a break at once.
        if result.broken is not None and not as_json:
            b = result.broken
            typer.echo(
                f"ROMPU / BROKEN espace / space {b.space_id} seq {b.seq}: {b.message_fr} / {b.message}"
            )

    async def work(rt: Runtime) -> Report:
        return await audit.verify(rt, space_id, on_space=show)

    try:
        report = common.run(lambda: common.with_runtime(common.settings(), work))
    except typer.Exit:
        raise
    except Exception as exc:
        # Exit 1 means "a link is broken"; a check that could not run (database gone, a timeout) judged
        # nothing and says so in one line, never a traceback an operator would mistake for a finding (issue 15).
        raise common.fail(
            f"vérification interrompue, rien n'a été jugé / verification stopped, nothing was judged: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    elif report.ok:
        if space_id is not None and report.records == 0:
            typer.echo(f"espace / space {space_id}: aucune trace / no trace")
        typer.echo(
            f"intact : {report.spaces} espace(s), {report.records} enregistrement(s), {report.seals} sceau(x) "
            f"vérifiés / intact: {report.spaces} space(s), {report.records} record(s), {report.seals} seal(s) checked"
        )
    else:
        typer.echo(f"{len(report.broken)} espace(s) rompu(s) sur {report.spaces} / broken space(s)")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Adresse d'écoute / listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processus de l'application / app processes.")
    ] = 1,
    demo_data: Annotated[bool, typer.Option("--demo", help="Charge les données de démonstration.")] = False,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Migrations au démarrage.")
    ] = True,
) -> None:
    """Sert l'API ; arrêter le service arrête aussi le PostgreSQL embarqué / serve the API."""
    import uvicorn

    from espace_sante.logs import configure
    from espace_sante.storage.embedded import EmbeddedPostgres, ensure_database

    settings = common.settings()
    configure(settings.log_level)
    if demo_data:
        from espace_sante.demo import world as demo_module

        try:  # before PostgreSQL starts or the folder is marked
            demo_module.refuse_outside_development(settings)
        except demo_module.DemoRefused as exc:
            raise common.fail(str(exc)) from None
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.dev_marker.touch()
    os.environ.setdefault("ESPACE_SANTE_BASE_URL", f"http://{host}:{port}")
    settings = common.settings()
    embedded = None
    try:
        if settings.embedded:
            embedded = EmbeddedPostgres(settings.pg_data)
            dsn = asyncio.run(ensure_database(embedded.start()))
            # The app processes use the server started here; it stops when serve stops.
            os.environ["DATABASE_URL"] = dsn
            settings = common.settings()
        if migrate_first or demo_data:
            from espace_sante.demo import world as demo_module

            async def prepare(rt: object) -> dict[str, str] | None:
                from espace_sante.runtime import Runtime

                assert isinstance(rt, Runtime)
                if demo_data:
                    await demo_module.load(rt)
                    return await demo_module.ensure_demo_client(rt)
                return None

            client = common.run(lambda: common.with_runtime(settings, prepare, migrate=True))
        else:
            client = None
        base = settings.base_url.rstrip("/")
        typer.echo(
            f"\nespace-sante sert sur / is serving on {base}\n"
            f"  API FHIR R4      {base}/fhir/metadata\n"
            f"  OpenAPI          {base}/openapi.json\n"
            f"  santé / health   {base}/readyz\n"
            f"  données / data   {settings.data_dir.resolve()}",
            err=True,
        )
        if client:
            typer.echo(
                f"  client démo      {settings.data_dir / 'demo-client.json'} "
                f"(client_id {client['client_id']})\n",
                err=True,
            )
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: with this handler that ends
        # in SystemExit, so the `finally` below runs and stops the embedded PostgreSQL.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        uvicorn.run(
            "espace_sante.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            server_header=False,
            date_header=True,
            access_log=False,
            log_config=None,
            proxy_headers=False,  # forwarded headers: the app's own, from ESPACE_SANTE_TRUSTED_PROXIES only
            timeout_graceful_shutdown=10,
        )
    finally:
        if embedded is not None:
            embedded.stop()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
