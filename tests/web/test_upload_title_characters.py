"""The portal's upload form refuses a title holding a bidirectional control (issue 16 #5) with a message beside
the title, in French, and keeps the form as she filled it; nothing is stored."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import httpx

from espace_sante.runtime import Runtime
from tests.accounts.helpers import browser, csrf_of, new_person, sign_in
from tests.content.samples import report_pdf

UPLOAD = "/mon-espace/documents/ajouter"


async def test_a_title_that_reads_backwards_is_refused_beside_the_field(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        token = csrf_of((await client.get(UPLOAD)).text)
        answer = await client.post(
            UPLOAD,
            data={"csrf": token, "titre": "rapport \u202eexe.fdp", "type": "DOCPAT04"},
            files={"fichier": ("rapport.pdf", report_pdf(), "application/pdf")},
        )
        assert answer.status_code == 422, answer.text
        page = unescape(answer.text)
        alert = re.search(r'role="alert"[^>]*>([^<]*)<', page)
        assert alert is not None and "U+202E" in alert.group(1) and "titre" in alert.group(1), page
        assert " / " not in alert.group(1)  # the French half only
        assert re.search(r'id="titre"[^>]*aria-invalid="true"', page, re.S), page
        assert re.search(r'value="DOCPAT04"[^>]*\schecked', page)
        listed = unescape((await client.get("/mon-espace/documents")).text)
        assert "Vous n'avez pas encore de document." in listed
