"""People who had a DMP find its documents in their space (issue 6): the legacy export's XDM packages are imported,
matched on INS, through the MHD deposit path; documents of unknown or opposed people, of spaces not open yet, or
refused, are set aside encrypted and reported, and a retry deposits them once their person can take them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from espace_sante import clock
from espace_sante.access.policy import decide
from espace_sante.audit import wording
from espace_sante.context import Context
from espace_sante.crypto import DecryptionFailed, open_
from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.spaces.legacy import importer as legacy
from espace_sante.storage import audit as audit_store
from espace_sante.storage import legacy as legacy_store
from espace_sante.storage.db import Conn
from tests.documents.mhd import documents_of, new_person
from tests.factories import BASE, FHIR_JSON, INS, new_nir, patient
from tests.legacy.xdm import Doc, cda_doc, package, write, zip_with
from tests.lifecycle.test_lifecycle import holder_ctx, registered

#: What the migration's own actor reads of what it set aside.
READING = decide(legacy.ACTOR, "read", "DocumentReference")


async def set_aside_of(runtime: Runtime, digest: str) -> list[dict[str, Any]]:
    report = await legacy.report(runtime, limit=100_000)
    return [d for d in report.as_json()["documents"] if d["package"] == digest]


def digest_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


async def trace_sentences(runtime: Runtime, space: uuid.UUID) -> list[str]:
    async def fetch(conn: Conn) -> list[Any]:
        return [s.record async for s in audit_store.chain(conn, space)]

    return [wording.sentence(r) for r in await runtime.db.read("t_legacy_trace", fetch)]


async def test_a_former_dmp_is_imported_found_by_ins_and_traced_then_reimporting_changes_nothing(
    runtime: Runtime, fhir: httpx.AsyncClient, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Two people had a DMP: a consultation report (PDF) for one, a discharge letter (CDA) for the other, in two
    subsets of one package, with a third document for someone we do not know."""
    claire, claire_pid = await new_person(fhir)
    paul, _ = await new_person(fhir)
    stranger = new_nir()
    report, letter, lost = Doc(claire), cda_doc(paul, title="Lettre de liaison"), Doc(stranger)
    path = write(tmp_path / "export-dmp.zip", package([[report], [letter, lost]]))

    counts = await legacy.import_path(runtime, path)
    assert counts.as_json() == {
        "packages": 1,
        "subsets": 2,
        "documents": 3,
        "imported": 2,
        "already": 0,
        "set_aside": 1,
        "refused_packages": 0,
        "refused_subsets": 0,
        "problems": [],
    }

    # The holder finds her document by her INS, and can download it.
    issued = await devtokens.issue(runtime, f"holder:{claire}", "patient/*.rs")
    holder = httpx.AsyncClient(
        transport=http._transport,
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {issued.access_token}", "Accept": "application/fhir+json"},
    )
    found = await holder.get(
        "/DocumentReference", params={"patient.identifier": f"{INS}|{claire}", "status": "current"}
    )
    assert found.status_code == 200, found.text
    [doc] = [e["resource"] for e in found.json()["entry"]]
    assert doc["masterIdentifier"]["value"] == f"urn:oid:{report.unique_id}"
    assert doc["subject"]["reference"] == f"Patient/{claire_pid}"
    assert doc["content"][0]["attachment"]["title"] == "Compte rendu de consultation"
    content = await holder.get(f"/{doc['content'][0]['attachment']['url']}", headers={"Accept": "*/*"})
    assert content.status_code == 200 and content.content == report.content
    [paul_doc] = await documents_of(fhir, paul)
    assert paul_doc["content"][0]["attachment"]["contentType"] == "text/xml"

    # The trace says, in plain words, that the documents came from the former DMP.
    sentences = await trace_sentences(runtime, uuid.UUID(claire_pid[:32]))
    assert any(
        s.startswith("Le logiciel « Reprise de votre ancien DMP » a ajouté un document à votre dossier")
        for s in sentences
    ), sentences

    # The stranger's document is set aside, named by package and path, never by INS or title.
    digest = digest_of(path)
    [aside] = await set_aside_of(runtime, digest)
    assert aside["reason"] == "unknown-person" and aside["entry"].endswith(lost.file)
    assert stranger not in str(aside)

    # The same package again: nothing changes.
    before = len(sentences)
    again = await legacy.import_path(runtime, path)
    assert (again.imported, again.already, again.set_aside) == (0, 2, 1)
    assert len(await trace_sentences(runtime, uuid.UUID(claire_pid[:32]))) == before
    assert len(await documents_of(fhir, claire)) == 1
    assert [a["attempts"] for a in await set_aside_of(runtime, digest)] == [1]


async def test_an_unknown_person_is_set_aside_then_retried_once_registered(
    runtime: Runtime, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    nir = new_nir()
    doc = Doc(nir)
    path = write(tmp_path / "inconnu.zip", package([[doc]]))
    assert (await legacy.import_path(runtime, path)).set_aside == 1
    assert (await legacy.retry(runtime)).imported == 0  # still nobody with that INS

    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    retried = await legacy.retry(runtime)
    assert retried.imported >= 1
    assert [d["masterIdentifier"]["value"] for d in await documents_of(fhir, nir)] == [
        f"urn:oid:{doc.unique_id}"
    ]
    assert await set_aside_of(runtime, digest_of(path)) == []
    assert (await legacy.report(runtime)).resolved.get("imported", 0) >= 1
    # Importing the package again finds it there.
    assert (await legacy.import_path(runtime, path)).already == 1


async def test_an_opposed_person_keeps_nothing_in_their_space_and_a_space_not_open_waits(
    runtime: Runtime, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    system = Context.system(runtime)
    opposed, opposed_nir = await registered(runtime, tmp_path)
    await lifecycle.notify(system, opposed)
    await lifecycle.oppose(system, opposed, "phone")
    waiting, waiting_nir = await registered(runtime, tmp_path)
    path = write(tmp_path / "etats.zip", package([[Doc(opposed_nir), Doc(waiting_nir)]]))

    counts = await legacy.import_path(runtime, path)
    assert (counts.imported, counts.set_aside) == (0, 2)
    reasons = sorted(d["reason"] for d in await set_aside_of(runtime, digest_of(path)))
    assert reasons == ["not-open", "opposed"]

    # The waiting person activates their space early: the next retry brings their document.
    await lifecycle.activate(holder_ctx(runtime, waiting_nir), waiting)
    await legacy.retry(runtime)
    assert len(await documents_of(fhir, waiting_nir)) == 1
    assert [d["reason"] for d in await set_aside_of(runtime, digest_of(path))] == ["opposed"]


async def _aside_rows(runtime: Runtime, digest: str) -> list[Any]:
    async def q(conn: Conn) -> list[Any]:
        return list(
            await conn.fetch(
                "SELECT space_id, item_id, unique_key, key_version, entry, created_at, attempts "
                "FROM legacy_set_aside WHERE package = $1 AND resolved_at IS NULL ORDER BY entry_path",
                digest,
            )
        )

    return await runtime.db.read("t_legacy_rows", q)


async def _readable(runtime: Runtime, row: Any) -> bool:
    """Whether a set-aside row (as a backup holds it) can still be decrypted with the key store."""

    async def q(conn: Conn) -> bool:
        try:
            aead = await runtime.keys.version(conn, row["space_id"], row["key_version"])
            open_(
                aead, row["entry"], f"legacy/{row['unique_key'].hex()}/entry/k{row['key_version']}".encode()
            )
        except DecryptionFailed:
            return False
        return True

    return await runtime.db.read("t_legacy_key", q)


async def test_each_persons_documents_set_aside_have_their_own_key_and_go_with_their_space(
    runtime: Runtime, tmp_path: Path
) -> None:
    """Claire's space is not open yet and Paul opposed: each one's former DMP waits set aside, under a key of
    their own. Claire activates her space and asks for its destruction: her documents still set aside go
    with it, their key too, so that a copy of the rows taken before (a backup) can no longer be decrypted.
    Paul's stay, readable, for the insurer's decision."""
    system = Context.system(runtime)
    claire_space, claire = await registered(runtime, tmp_path)
    paul_space, paul = await registered(runtime, tmp_path)
    await lifecycle.notify(system, paul_space)
    await lifecycle.oppose(system, paul_space, "phone")
    path = write(tmp_path / "deux.zip", package([[Doc(claire), Doc(claire), Doc(paul)]]))
    assert (await legacy.import_path(runtime, path)).set_aside == 3
    backup = await _aside_rows(runtime, digest_of(path))
    claires = [r for r in backup if r["space_id"] == await _person_space(runtime, claire)]
    pauls = [r for r in backup if r["space_id"] == await _person_space(runtime, paul)]
    assert (len(claires), len(pauls)) == (2, 1)  # two keys, neither the store's shared one
    assert all([await _readable(runtime, r) for r in backup])

    await lifecycle.activate(holder_ctx(runtime, claire), claire_space)
    await lifecycle.erase(holder_ctx(runtime, claire), claire_space, on=clock.today())
    delay = runtime.settings.destruction_delay_days
    await lifecycle.run(runtime, clock.today() + timedelta(days=delay))
    assert await lifecycle.state(runtime, claire_space) == "destroyed"
    assert await _aside_rows(runtime, digest_of(path)) == pauls
    assert [await _readable(runtime, r) for r in backup] == [r in pauls for r in backup]
    # An operator carries out the insurer's decision on Paul's: the same erasure.
    assert await legacy.forget(runtime, paul) == 1
    assert await _aside_rows(runtime, digest_of(path)) == []
    assert not any([await _readable(runtime, r) for r in pauls])


async def test_a_document_set_aside_under_the_shared_key_moves_to_its_persons_at_the_next_retry(
    runtime: Runtime, tmp_path: Path
) -> None:
    """Rows set aside before migration 0021 are all under the store's shared key: a retry keeps each one,
    with its date and attempts, under its person's key."""
    _, nir = await registered(runtime, tmp_path)
    path = write(tmp_path / "ancien.zip", package([[Doc(nir)]]))
    await legacy.import_path(runtime, path)
    [row] = await _aside_rows(runtime, digest_of(path))

    async def as_before_0021(conn: Conn) -> None:
        [pending] = [p for p in await legacy_store.pending_page(conn, runtime.keys, READING, after=None, limit=100_000)
                     if p.item_id == row["item_id"]]  # fmt: skip
        await conn.execute("DELETE FROM legacy_set_aside WHERE item_id = $1", row["item_id"])
        await legacy_store.set_aside(
            conn, runtime.keys, nir=None, unique=row["unique_key"], reason="not-open",
            location="space.state", package=digest_of(path), entry_path="x", entry=pending.entry, content=None,
        )  # fmt: skip

    await runtime.db.interaction("t_legacy_old", as_before_0021)
    [old] = await _aside_rows(runtime, digest_of(path))
    assert old["space_id"] == legacy_store.LEGACY_SPACE

    await legacy.retry(runtime)
    [moved] = await _aside_rows(runtime, digest_of(path))
    assert moved["space_id"] == await _person_space(runtime, nir)
    assert (moved["item_id"], moved["created_at"], moved["attempts"]) == (
        old["item_id"], old["created_at"], old["attempts"] + 1,
    )  # fmt: skip
    assert await _readable(runtime, moved)


async def _person_space(runtime: Runtime, nir: str) -> uuid.UUID:
    return await runtime.db.interaction("t_legacy_person", legacy_store.person_space, runtime.keys, nir)


async def test_refused_documents_are_set_aside_with_the_reason_and_the_rest_imported(
    runtime: Runtime, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    nir, _ = await new_person(fhir)
    good = Doc(nir)
    wrong_hash = Doc(nir, hash="0" * 40)
    no_class = Doc(nir, omit=frozenset({"classCode"}))
    no_file = Doc(nir, omit=frozenset({"file"}))
    not_a_pdf = Doc(nir, content=b"MZ\x90\x00 not a document")
    path = write(tmp_path / "refus.zip", package([[good, wrong_hash, no_class, no_file, not_a_pdf]]))

    counts = await legacy.import_path(runtime, path)
    assert (counts.imported, counts.set_aside) == (1, 4)
    found = {d["entry"].rsplit("/", 1)[1]: d for d in await set_aside_of(runtime, digest_of(path))}
    assert found[wrong_hash.file]["reason"] == "invalid-content"
    assert found[wrong_hash.file]["location"].endswith("attachment.hash")
    assert found[no_class.file]["reason"] == "invalid-metadata"
    assert found[no_class.file]["location"] == "XDSDocumentEntry.classCode"
    assert found[no_file.file]["reason"] == "invalid-content"
    assert found[not_a_pdf.file]["reason"] == "invalid-content"
    assert [d["id"] for d in await documents_of(fhir, nir)] != []


async def test_a_type_code_only_the_dmp_listed_is_imported_not_set_aside(
    runtime: Runtime, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    """LOINC 11526-1 (anatomopathology) is in the DMP's own type list (JDV_J66), no longer in the CI-SIS one
    (JDV_J07): a report the DMP accepted comes into the space with its type."""
    nir, _ = await new_person(fhir)
    old = Doc(nir, title="CR d'anatomopathologie", type_code=("11526-1", "2.16.840.1.113883.6.1", "CR ACP"))
    path = write(tmp_path / "acp.zip", package([[old]]))
    counts = await legacy.import_path(runtime, path)
    assert (counts.imported, counts.set_aside) == (1, 0)
    [document] = await documents_of(fhir, nir)
    assert {"system": "http://loinc.org", "code": "11526-1"}.items() <= document["type"]["coding"][0].items()


async def test_hostile_packages_and_metadata_are_refused_and_reported(
    runtime: Runtime, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    nir, _ = await new_person(fhir)
    folder = tmp_path / "lot"
    folder.mkdir()
    write(folder / "a-bombe.zip", zip_with([("IHE_XDM/SUBSET01/DOC.XML", bytes(8 * 1024 * 1024))]))
    write(folder / "b-evasion.zip", zip_with([("../../etc/evil", b"x")]))
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">&x;'
        b"</lcm:SubmitObjectsRequest>"
    )
    good = Doc(nir)
    write(folder / "c-xxe.zip", package([[Doc(nir)], [good]], metadata={1: xxe}))
    write(folder / "d-pas-un-zip.zip", b"PK\x03\x04 truncated")

    counts = await legacy.import_path(runtime, folder)
    assert (counts.packages, counts.refused_packages, counts.refused_subsets) == (4, 3, 1)
    assert counts.imported == 1  # the second subset of the package with a hostile METADATA.XML
    text = "\n".join(counts.problems)
    assert "a-bombe.zip" in text and "ZIP bomb" in text
    assert "b-evasion.zip" in text and "parent folder" in text
    assert "c-xxe.zip IHE_XDM/SUBSET01" in text and "DOCTYPE" in text
    assert "d-pas-un-zip.zip" in text and "root:" not in text
