"""An XDM package is checked on its ZIP central directory before anything is decompressed (SECURITY FHIR/IHE attack
8): bombs, too many entries, unsafe paths, nested archives, symlinks, encrypted entries and lying sizes are
refused with a message naming the entry; METADATA.XML is ebRIM read without DTDs or entities."""

from __future__ import annotations

import posixpath
import struct
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from espace_sante.fhir import pdsm
from espace_sante.spaces.legacy import metadata
from espace_sante.spaces.legacy.xdm import Limits, Package, PackageRefused, entry_name_problem
from tests.factories import new_nir
from tests.legacy.xdm import SYMLINK, Doc, cda_doc, info, metadata_xml, package, write, zip_with

LIMITS = Limits(
    package_bytes=64 * 1024 * 1024,
    entries=50,
    total_bytes=40 * 1024 * 1024,
    entry_bytes=20 * 1024 * 1024,
    ratio=100,
)


def refused(path: Path, limits: Limits = LIMITS) -> str:
    with pytest.raises(PackageRefused) as caught:
        Package(path, limits)
    return caught.value.en


def test_a_valid_package_lists_its_subsets_and_reads_its_documents(tmp_path: Path) -> None:
    nir = new_nir()
    first, second = Doc(nir), cda_doc(nir)
    path = write(tmp_path / "dmp.zip", package([[first], [second]]))
    with Package(path, LIMITS) as xdm:
        assert [s.folder for s in xdm.subsets] == ["IHE_XDM/SUBSET01", "IHE_XDM/SUBSET02"]
        assert len(xdm.digest) == 64
        found = xdm.resolve(xdm.subsets[0], first.file)
        assert found is not None and xdm.read(found) == first.content
        # URIs are relative to their own subset, never outside it, and compared without case.
        assert xdm.resolve(xdm.subsets[1], first.file) is None
        assert xdm.resolve(xdm.subsets[0], "../SUBSET02/" + second.file) is None
        assert xdm.resolve(xdm.subsets[1], second.file.lower()) is not None


def test_a_zip_bomb_is_refused_from_its_declared_ratio(tmp_path: Path) -> None:
    bomb = write(tmp_path / "bomb.zip", zip_with([("IHE_XDM/SUBSET01/DOC.XML", bytes(10 * 1024 * 1024))]))
    assert "ZIP bomb" in refused(bomb)


def test_too_many_entries_are_refused_before_the_directory_is_parsed(tmp_path: Path) -> None:
    many = write(tmp_path / "many.zip", zip_with([(f"IHE_XDM/SUBSET01/F{i}.TXT", b"x") for i in range(60)]))
    assert "too many entries" in refused(many)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.sh", "parent folder"),
        ("IHE_XDM/SUBSET01/../../evil", "parent folder"),
        ("/etc/cron.d/evil", "absolute path"),
        ("C:/Windows/evil.exe", "absolute path"),
        ("IHE_XDM\\SUBSET01\\evil", "backslash"),
        ("IHE_XDM//evil", "empty or '.'"),
    ],
)
def test_unsafe_paths_are_refused(tmp_path: Path, name: str, why: str) -> None:
    path = write(tmp_path / "path.zip", zip_with([(info(name), b"x")]))
    assert why in refused(path)


def test_a_nested_archive_is_refused(tmp_path: Path) -> None:
    inner = zip_with([("a.txt", b"x")], base=False)
    assert "nested archive" in refused(
        write(tmp_path / "n.zip", zip_with([("IHE_XDM/SUBSET01/inner.zip", inner)]))
    )
    # Under another name, its content is refused when read, never opened.
    path = write(tmp_path / "n2.zip", zip_with([("IHE_XDM/SUBSET01/DOC.PDF", inner)]))
    with Package(path, LIMITS) as xdm, pytest.raises(PackageRefused, match="nested archive"):
        xdm.read("IHE_XDM/SUBSET01/DOC.PDF")


def test_symlinks_and_encrypted_entries_are_refused(tmp_path: Path) -> None:
    link = write(
        tmp_path / "l.zip", zip_with([(info("IHE_XDM/SUBSET01/DOC.PDF", mode=SYMLINK), b"/etc/shadow")])
    )
    assert "symbolic link" in refused(link)
    # zipfile writes no encrypted entries: the "encrypted" flag (APPNOTE 4.4.4 bit 0) is set by hand.
    data = bytearray(zip_with([("IHE_XDM/SUBSET01/DOC.PDF", b"x" * 40)]))
    central, local = data.rfind(b"PK\x01\x02"), data.rfind(b"PK\x03\x04")
    data[central + 8] |= 0x1
    data[local + 6] |= 0x1
    assert "encrypted" in refused(write(tmp_path / "e.zip", bytes(data)))


def test_duplicate_names_are_refused_whatever_their_case(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twice = zip_with([("IHE_XDM/SUBSET01/DOC.PDF", b"a"), ("IHE_XDM/SUBSET01/doc.pdf", b"b")])
    assert "duplicate" in refused(write(tmp_path / "d.zip", twice))


def test_a_huge_declared_size_is_refused_and_a_lying_one_cannot_overflow(tmp_path: Path) -> None:
    data = bytearray(zip_with([("IHE_XDM/SUBSET01/DOC.PDF", b"%PDF-1.4 small")]))
    # The central directory entry of DOC.PDF (the last one) declares 4 GiB.
    at = data.rfind(b"PK\x01\x02")
    data[at + 24 : at + 28] = struct.pack("<I", 0xFFFFFFF0)
    assert "too large" in refused(write(tmp_path / "huge.zip", bytes(data)))
    # Declared smaller than it is: reading stops at the declared size and the CRC fails.
    data = bytearray(zip_with([("IHE_XDM/SUBSET01/DOC.PDF", b"%PDF-1.4 " + b"a" * 5000)]))
    at = data.rfind(b"PK\x01\x02")
    data[at + 24 : at + 28] = struct.pack("<I", 10)
    with Package(write(tmp_path / "lie.zip", bytes(data)), LIMITS) as xdm, pytest.raises(PackageRefused):
        xdm.read("IHE_XDM/SUBSET01/DOC.PDF")


def test_other_files_are_not_packages(tmp_path: Path) -> None:
    assert "not a ZIP" in refused(write(tmp_path / "x.zip", b"%PDF-1.4 not a zip"))
    no_xdm = write(tmp_path / "y.zip", zip_with([("README.TXT", b"x")], base=False))
    assert "not an IHE XDM package" in refused(no_xdm)
    (tmp_path / "link.zip").symlink_to(no_xdm)
    assert "not a regular file" in refused(tmp_path / "link.zip")
    assert "package too large" in refused(no_xdm, Limits(64, 10, 10, 10, 10))


@given(st.text(alphabet=st.sampled_from(list("ab./\\:C ")) | st.characters(), max_size=40))
def test_an_accepted_entry_name_always_stays_inside_its_folder(name: str) -> None:
    """Property: whatever the name, if the check accepts it, joining it to a root stays under that root with
    POSIX and Windows rules alike (no `..`, no absolute path, no drive, no backslash)."""
    if entry_name_problem(name) is not None:
        return
    joined = posixpath.normpath(posixpath.join("/root", name))
    assert joined.startswith("/root/")
    assert "\\" not in name and ":" not in name and ".." not in name.split("/")
    assert posixpath.relpath(joined, "/root") == name.rstrip("/")


# --- METADATA.XML --------------------------------------------------------------------------------------------


def test_metadata_maps_to_a_pdsm_document_reference() -> None:
    nir = new_nir()
    doc = Doc(
        nir,
        confidentiality=(
            ("N", "2.16.840.1.113883.5.25", "Normal"),
            ("MASQUE_PS", "1.2.250.1.213.1.1.4.13", "Masqué"),
        ),
    )
    [entry] = metadata.parse(metadata_xml([doc]))
    assert entry.problems == ()
    assert metadata.patient_ins(entry, production=True) == ("1.2.250.1.213.1.4.8", nir)
    dr = metadata.document_reference(entry, ins=("1.2.250.1.213.1.4.8", nir), subject="Patient/abc")
    assert dr["masterIdentifier"] == {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{doc.unique_id}"}
    assert dr["type"]["coding"][0]["system"] == "http://loinc.org"
    assert dr["category"][0]["coding"][0]["code"] == "10"
    assert [lbl["coding"][0]["code"] for lbl in dr["securityLabel"]] == ["N", "MASQUE_PS"]
    assert dr["date"] == "2024-01-15T10:30:00Z"
    assert dr["context"]["period"]["start"] == "2023-06-12T08:00:00Z"
    author = next(c for c in dr["contained"] if c["resourceType"] == "Practitioner")
    assert {"system": "https://rpps.esante.gouv.fr", "value": "10003613289"} in author["identifier"]
    dr["content"][0]["attachment"]["url"] = "urn:uuid:00000000-0000-4000-8000-000000000000"
    assert pdsm.check_document_reference(dr).warnings == []


def test_missing_slots_are_named_per_document() -> None:
    nir = new_nir()
    good, bad = Doc(nir), Doc(nir, omit=frozenset({"classCode", "hash", "uniqueId"}))
    entries = metadata.parse(metadata_xml([good, bad]))
    assert entries[0].problems == ()
    assert [p.where for p in entries[1].problems] == [
        "XDSDocumentEntry.uniqueId",
        "XDSDocumentEntry.hash",
        "XDSDocumentEntry.classCode",
    ]


@pytest.mark.parametrize(
    ("xml", "why"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">&x;'
            b"</lcm:SubmitObjectsRequest>",
            "DOCTYPE",
        ),
        (b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]><r>&b;</r>', "DOCTYPE"),
        (b"<r><unclosed></r>", "not well-formed"),
        (b"<html><body>pas de m\xc3\xa9tadonn\xc3\xa9es</body></html>", "not an ebRIM submission"),
    ],
)
def test_unreadable_metadata_is_refused_without_resolving_anything(xml: bytes, why: str) -> None:
    with pytest.raises(metadata.MetadataRefused) as caught:
        metadata.parse(xml)
    assert why in caught.value.en and "root:" not in str(caught.value)


def test_test_ins_is_matched_outside_production_only() -> None:
    nir = new_nir()
    [entry] = metadata.parse(metadata_xml([Doc(nir, ins_oid=pdsm.INS_NIR_TEST_OID)]))
    assert metadata.patient_ins(entry, production=False) == (pdsm.INS_NIR_TEST_OID, nir)
    assert isinstance(metadata.patient_ins(entry, production=True), metadata.Problem)


def test_an_entry_survives_its_json_form() -> None:
    [entry] = metadata.parse(metadata_xml([Doc(new_nir(), omit=frozenset({"hash"}))]))
    assert metadata.entry_from_json(entry.as_json()) == entry


def test_zip_limits_come_from_settings() -> None:
    from espace_sante.settings import Settings

    limits = Limits.from_settings(Settings(legacy_max_entries=7))
    assert limits.entries == 7 and limits.entry_bytes == 20 * 1024 * 1024
    assert zipfile.ZIP_DEFLATED  # the builders deflate, as real exports do
