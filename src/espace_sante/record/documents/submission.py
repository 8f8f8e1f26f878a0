"""Checks of an ITI-65 submission as a whole: PDSm metadata of the SubmissionSet and its documents before
anything runs, and each document's declared size, SHA-1 and MIME type against the content sent with it."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from espace_sante.content.checks import media_types_for
from espace_sante.context import Context
from espace_sante.errors import InvalidResource, Issue
from espace_sante.fhir import pdsm


def _attachment_binary(url: Any) -> str | None:
    if not isinstance(url, str) or "Binary/" not in url:
        return None
    return url.split("Binary/", 1)[1].split("/", 1)[0].split("?", 1)[0] or None


def check_attachments(ctx: Context, body: dict[str, Any], where: str = "DocumentReference") -> None:
    """A document's declared size, SHA-1 and MIME type must be those of the content sent with it (PDSm:
    `attachment.size`, `attachment.hash`). Content stored by an earlier request is checked when it was sent."""
    problems: list[Issue] = []
    for i, content in enumerate(body.get("content") or ()):
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if not isinstance(attachment, dict):
            continue
        binary = _attachment_binary(attachment.get("url"))
        checked = ctx.deposits.get(binary) if binary else None
        if checked is None:
            continue
        at = f"{where}.content[{i}].attachment"
        size = attachment.get("size")
        if size is not None and size != checked.size:
            problems.append(
                Issue(
                    f"{at}.size : {size} déclaré, le contenu fait {checked.size} octets / declared {size}, the "
                    f"content has {checked.size} bytes",
                    "value",
                    expression=f"{at}.size",
                )
            )
        digest = attachment.get("hash")
        if digest is not None and digest != base64.b64encode(checked.sha1).decode():
            problems.append(
                Issue(
                    f"{at}.hash : le SHA-1 déclaré ne correspond pas au contenu / the declared SHA-1 does not "
                    "match the content",
                    "value",
                    expression=f"{at}.hash",
                )
            )
        ctype = attachment.get("contentType")
        if isinstance(ctype, str) and ctype.split(";")[0].strip().lower() not in media_types_for(
            checked.kind
        ):
            problems.append(
                Issue(
                    f"{at}.contentType : « {ctype} » déclaré, le contenu est {checked.media_type} / declared "
                    f"{ctype}, the content is {checked.media_type}",
                    "value",
                    expression=f"{at}.contentType",
                )
            )
    if problems:
        raise InvalidResource(problems[0].diagnostics, issues=problems)


def is_submission_set(body: Any) -> bool:
    if not isinstance(body, dict) or body.get("resourceType") != "List":
        return False
    codings = (body.get("code") or {}).get("coding") or ()
    return any(isinstance(c, dict) and c.get("code") == "submissionset" for c in codings)


def check_submission(
    ctx: Context, resources: Sequence[tuple[str, dict[str, Any]]]
) -> list[tuple[int, Issue]]:
    """PDSm checks of an ITI-65 submission's SubmissionSet and DocumentReferences before anything runs:
    every problem of every entry is reported at once. Returns lenient-mode warnings by entry index."""
    lenient = ctx.runtime.settings.documents_lenient_codes
    warnings: list[tuple[int, Issue]] = []
    problems: list[Issue] = []
    sets = [where for where, body in resources if is_submission_set(body)]
    if len(sets) != 1:
        raise InvalidResource(
            "une soumission ITI-65 contient exactement un lot de soumission (List submissionset) / an ITI-65 "
            f"submission holds exactly one SubmissionSet List (found {len(sets)})",
            expression="Bundle.entry",
        )
    for index, (where, body) in enumerate(resources):
        try:
            if is_submission_set(body):
                report = pdsm.check_submission_set(body, where=where, lenient=lenient)
            elif body.get("resourceType") == "DocumentReference":
                report = pdsm.check_document_reference(body, where=where, lenient=lenient)
            else:
                continue
            warnings += [(index, w) for w in report.warnings]
        except InvalidResource as exc:
            problems += exc.all_issues()
    if problems:
        raise InvalidResource(
            f"{len(problems)} problème(s) dans la soumission / problem(s) in the submission : "
            + problems[0].diagnostics,
            issues=problems,
        )
    return warnings
