"""`espace-sante notices`, `letters` and `outbox`: the notices of new spaces (spaces/notices/,
docs/notices.md), the letters for a mailing house, and the local outbox of the embedded default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from espace_sante.cli import common

notices_app = typer.Typer(help="Avis de création des espaces / notices of new spaces.", no_args_is_help=True)
letters_app = typer.Typer(help="Lettres à imprimer / letters to print.", no_args_is_help=True)
outbox_app = typer.Typer(help="Messages de la boîte d'envoi locale / local outbox.", no_args_is_help=True)


@notices_app.command("send")
def notices_send(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date d'envoi AAAA-MM-JJ / sending date (YYYY-MM-DD).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Compteurs en JSON / counts as JSON.")] = False,
    deliver: Annotated[
        bool,
        typer.Option(
            "--deliver/--no-deliver",
            help="Remet aussi les courriels maintenant, sinon le worker s'en charge / also deliver the e-mails "
            "now; with --no-deliver the worker's jobs do.",
        ),
    ] = True,
) -> None:
    """Envoie l'avis et le code d'activation de chaque espace créé / send every new space's notice and code.

    Chaque courriel a sa tâche de remise (`espace-sante worker`), enregistrée avec l'avis / each e-mail's
    delivery job is recorded with the notice. Idempotent : relancé, il n'envoie rien deux fois et reprend ce
    qu'une interruption a laissé / idempotent: a second run sends nothing twice and delivers what a crash
    left."""
    from espace_sante.runtime import Runtime
    from espace_sante.spaces.notices import issue

    day = common.day(as_of)

    async def work(rt: Runtime) -> issue.SendCounts:
        return await issue.send(rt, day, deliver_now=deliver)

    counts = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(json.dumps(counts.as_json()))
        return
    typer.echo(
        f"{counts.notified} espace(s) notifié(s) : {counts.emails} courriel(s), {counts.letters} lettre(s) en "
        f"attente ; {counts.delivered} courriel(s) remis, {counts.failed} en échec, {counts.uncertain} incertain(s) "
        "/ spaces notified, e-mails, letters queued, e-mails delivered, failed, uncertain"
    )


@letters_app.command("build")
def letters_build(
    out: Annotated[Path, typer.Option("--out", help="Dossier de sortie / output folder.")],
    as_json: Annotated[
        bool, typer.Option("--json", help='{"files": [...], "letters": N, "manifest": ...}')
    ] = False,
) -> None:
    """Imprime les lettres en attente en PDF par lots, avec un manifeste CSV / build the queued letters."""
    from espace_sante.runtime import Runtime
    from espace_sante.spaces.notices import letters

    async def work(rt: Runtime) -> letters.Built:
        return await letters.build_letters(rt, out)

    built = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(json.dumps(built.as_json()))
        return
    if not built.letters:
        typer.echo("aucune lettre en attente / no letter waiting")
        return
    typer.echo(
        f"{built.letters} lettre(s) dans / letter(s) in {len(built.files)} PDF, manifeste {built.manifest}"
    )
    for name in built.files:
        typer.echo(f"  {out / name}")
    typer.echo(
        f"Une fois remis à l'imprimeur / once handed to the mailing house: espace-sante letters handed "
        f"{built.batch} (sinon effacés dans / else deleted in {common.settings().letter_files_days} j/days)"
    )


@letters_app.command("handed")
def letters_handed(
    batch: Annotated[
        str, typer.Argument(help="Le lot : son manifeste ou son identifiant / the batch's manifest or id.")
    ],
    operator: Annotated[
        str | None,
        typer.Option("--operator", help="Agent qui confirme / operator login (else: the service)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='{"files": N, ...}')] = False,
) -> None:
    """Confirme la remise d'un lot à l'imprimeur : ses fichiers (codes en clair) sont effacés / confirm a batch
    went to the mailing house: its files, which hold the codes in clear, are deleted."""
    from espace_sante.runtime import Runtime
    from espace_sante.spaces.notices import letters

    async def work(rt: Runtime) -> letters.Purged:
        return await letters.hand_over(rt, batch, operator=operator)

    done = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(json.dumps(done.as_json()))
        return
    if done.unreachable:
        typer.echo(
            "remise enregistrée ; dossier du lot absent de cette machine, à effacer là où il a été imprimé "
            "(notices purge) / hand-over recorded; the batch's folder is not on this machine: run notices purge "
            "where it was built"
        )
        return
    typer.echo(f"remise enregistrée, {done.files} fichier(s) effacé(s) / hand-over recorded, files deleted")


@notices_app.command("purge")
def notices_purge(
    as_json: Annotated[bool, typer.Option("--json", help="Compteurs en JSON / counts as JSON.")] = False,
) -> None:
    """Efface ce que la durée de conservation ne permet plus de garder / delete what retention no longer allows.

    Les fichiers des lots de lettres remis ou imprimés depuis plus de ESPACE_SANTE_LETTER_FILES_DAYS jours, le
    texte des messages de la boîte d'envoi remis depuis plus de ESPACE_SANTE_OUTBOX_BODY_DAYS jours / the files
    of letter batches handed over or older than the first, the text of outbox messages delivered before the
    second. Le worker le fait chaque heure / the worker does it hourly."""
    from espace_sante.runtime import Runtime
    from espace_sante.spaces.notices import letters

    async def work(rt: Runtime) -> letters.Purged:
        return await letters.purge(rt)

    done = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(json.dumps(done.as_json()))
        return
    typer.echo(
        f"{done.batches} lot(s) de lettres effacé(s) ({done.files} fichier(s)), {done.outbox_texts} texte(s) de "
        "la boîte d'envoi effacé(s) / letter batches deleted (files), outbox texts dropped"
    )
    for batch_id in done.unreachable:
        typer.echo(
            f"  lot {batch_id} : dossier absent de cette machine / folder not on this machine", err=True
        )


@outbox_app.command("list")
def outbox_list(
    as_json: Annotated[bool, typer.Option("--json", help="Une liste JSON / a JSON list.")] = False,
    with_body: Annotated[bool, typer.Option("--with-body", help="Affiche le texte / show the text.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Nombre maximum / at most.")] = 1000,
) -> None:
    """Les messages de la boîte d'envoi locale (sans serveur SMTP) / the local outbox's messages."""
    from espace_sante.runtime import Runtime
    from espace_sante.storage import notices as store

    async def work(rt: Runtime) -> list[store.OutboxMessage]:
        return await rt.db.read("outbox_list", store.outbox, with_body=with_body, limit=limit)

    messages = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        rows: list[dict[str, Any]] = []
        for m in messages:
            row: dict[str, Any] = {
                "id": str(m.message_id),
                "to": m.recipient,
                "subject": m.subject,
                "date": m.created_at.isoformat(),
                "sent": m.sent_at.isoformat() if m.sent_at else None,
                "error": m.error,
            }
            if with_body:
                row["body"] = m.body
            rows.append(row)
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not messages:
        typer.echo("boîte d'envoi vide / outbox empty")
    for m in messages:
        typer.echo(f"{m.created_at:%Y-%m-%d %H:%M}  {m.recipient}  {m.subject}")
        if with_body and m.body:
            typer.echo("    " + m.body.replace("\n", "\n    "))
        elif with_body:
            typer.echo("    (texte effacé après remise / text dropped after delivery)")


@notices_app.command("uncertain")
def notices_uncertain(
    as_json: Annotated[bool, typer.Option("--json", help="Une liste JSON / a JSON list.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Nombre maximum / at most.")] = 1000,
) -> None:
    """Les courriels remis au relais sans réponse enregistrée / e-mails handed to the relay, answer lost.

    Chacun a peut-être été accepté : il n'est jamais renvoyé automatiquement. Vérifiez dans les journaux du
    relais, puis `notices resolve` / each may have been accepted: never resent automatically. Check the
    relay's logs, then `notices resolve`."""
    from espace_sante.runtime import Runtime
    from espace_sante.spaces.notices import delivery

    async def work(rt: Runtime) -> list[delivery.UncertainNotice]:
        return await delivery.uncertain(rt, limit=limit)

    found = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(json.dumps([u.as_json() for u in found], ensure_ascii=False))
        return
    if not found:
        typer.echo("aucun courriel incertain / no uncertain e-mail")
    for u in found:
        typer.echo(
            f"{u.notice_id}  espace/space {u.space_id}  {u.recipient}  depuis/since {u.since:%Y-%m-%d %H:%M}"
        )


@notices_app.command("resolve")
def notices_resolve(
    notice_id: Annotated[str, typer.Argument(help="L'avis incertain / the uncertain notice's id.")],
    delivered: Annotated[
        bool,
        typer.Option("--delivered", help="Le relais l'a accepté / the relay's logs show it accepted it."),
    ] = False,
    resend: Annotated[
        bool,
        typer.Option(
            "--resend",
            help="Le relais ne l'a pas accepté : renvoyer une fois / not accepted: send once more.",
        ),
    ] = False,
    letter: Annotated[
        bool,
        typer.Option(
            "--letter", help="Envoyer une lettre à la place / send a letter to the postal address instead."
        ),
    ] = False,
    operator: Annotated[
        str | None, typer.Option("--operator", help="Agent qui décide / operator login (else: the service).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Le résultat en JSON / the outcome as JSON.")
    ] = False,
) -> None:
    """Décide d'un courriel incertain, tracé dans l'espace / resolve an uncertain e-mail, traced in the space."""
    import uuid

    from espace_sante.runtime import Runtime
    from espace_sante.spaces.notices import delivery

    chosen = [name for name, on in (("delivered", delivered), ("resend", resend), ("letter", letter)) if on]
    if len(chosen) != 1:
        raise common.fail("choisissez une option : --delivered, --resend ou --letter / choose one of them")
    try:
        nid = uuid.UUID(notice_id)
    except ValueError:
        raise common.fail(f"« {notice_id} » n'est pas un identifiant d'avis / is not a notice id") from None
    how: delivery.Resolution = chosen[0]  # type: ignore[assignment]

    async def work(rt: Runtime) -> dict[str, Any]:
        return await delivery.resolve(rt, nid, how, operator=operator)

    done = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(json.dumps(done))
        return
    words = {
        "delivered": "marqué remis / marked delivered",
        "resend": "sera renvoyé une fois / will be sent once more",
        "letter": f"remplacé par la lettre / replaced by the letter {done.get('letter')}",
    }
    typer.echo(f"{done['notice']} : {words[how]}")
