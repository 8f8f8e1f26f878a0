"""What `check_content` lets into a space, and what it turns away with a message in both languages."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Callable

import pikepdf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from espace_sante.content import checks
from espace_sante.content.checks import KINDS, Checked, ContentRefused, check_content, media_types_for
from tests.content import samples

LIMIT = 20 * 1024 * 1024


def refusal(data: bytes, **declared: object) -> ContentRefused:
    with pytest.raises(ContentRefused) as caught:
        check_content(data, max_size=declared.pop("max_size", LIMIT), **declared)  # type: ignore[arg-type]
    return caught.value


def pdf_refusal(change: Callable[[pikepdf.Pdf], object]) -> str:
    return str(refusal(samples.altered_pdf(change)))


# --- a genuine document passes, with what the store needs ------------------------------------------------------


def test_a_genuine_report_pdf_is_accepted_with_its_digests() -> None:
    report = samples.report_pdf(pages=2)

    checked = check_content(report, declared_type="application/pdf", max_size=LIMIT)

    assert checked == Checked(
        kind="pdf",
        media_type="application/pdf",
        size=len(report),
        sha1=hashlib.sha1(report, usedforsecurity=False).digest(),
        sha256=hashlib.sha256(report).digest(),
    )


def test_the_pdsm_declarations_are_checked_against_the_bytes() -> None:
    report = samples.report_pdf()
    sha1 = hashlib.sha1(report, usedforsecurity=False).digest()

    assert check_content(report, declared_size=len(report), declared_sha1=sha1, max_size=LIMIT).size == len(
        report
    )
    assert "Taille déclarée (10 octets)" in refusal(report, declared_size=10).fr
    assert (
        "declared SHA-1"
        in refusal(report, declared_sha1=hashlib.sha1(b"autre", usedforsecurity=False).digest()).en
    )
    assert (
        "SHA-1" in refusal(report, declared_sha1=base64.b64encode(sha1)).en
    )  # the base64 text, not the digest


def test_a_document_over_the_limit_is_refused_as_too_long() -> None:
    refused = refusal(samples.report_pdf(), max_size=100)

    assert refused.code == "too-long"
    assert "trop volumineux" in refused.fr
    assert str(refused) == f"{refused.fr} / {refused.en}"


def test_an_empty_document_is_refused() -> None:
    refused = refusal(b"")

    assert (refused.fr, refused.en, refused.code) == ("Document vide", "empty document", "invalid")


def test_a_kind_the_caller_does_not_allow_is_refused() -> None:
    refused = refusal(samples.png(), allowed=frozenset({"pdf", "cda"}))

    assert refused.en == "PNG not accepted here (accepted: PDF, CDA R2)"


def test_each_kind_has_its_declarable_media_types() -> None:
    assert media_types_for("cda") == {
        "text/xml",
        "application/xml",
        "application/hl7-v3+xml",
        "application/hl7-cda+xml",
    }
    assert all("application/pdf" not in media_types_for(kind) for kind in KINDS if kind != "pdf")
    with pytest.raises(ValueError, match="unknown content kind"):
        media_types_for("docx")


# --- the type comes from the bytes -----------------------------------------------------------------------------


def test_a_png_declared_as_a_pdf_is_refused_naming_both() -> None:
    refused = refusal(samples.png(), declared_type="application/pdf")

    assert refused.fr == "Type incohérent : déclaré application/pdf, contenu image/png"
    assert refused.en == "type mismatch: declared application/pdf, content image/png"


def test_parameters_and_case_of_the_declared_type_do_not_matter() -> None:
    checked = check_content(samples.cda_structured(), declared_type="Text/XML; charset=UTF-8", max_size=LIMIT)

    assert checked.media_type == "text/xml"


@pytest.mark.parametrize(
    ("looks_like", "data"),
    [
        ("text/html", b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"),
        ("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("application/x-dosexec", b"MZ\x90\x00\x03" + bytes(200)),
        ("application/dicom", bytes(128) + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + bytes(40)),
        ("image/gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00;"),
        ("application/postscript", b"%!PS-Adobe-3.0\n/Helvetica findfont 12 scalefont setfont\nshowpage\n"),
    ],
)
def test_other_formats_are_refused_naming_what_they_look_like(looks_like: str, data: bytes) -> None:
    refused = refusal(data)

    assert refused.fr.startswith(f"Type de contenu non accepté : {looks_like} (acceptés : PDF, CDA R2, JPEG")
    assert refused.en.endswith("(accepted: PDF, CDA R2, JPEG, PNG, UTF-8 text)")


def test_a_pdf_that_is_also_a_zip_is_refused() -> None:
    polyglot = io.BytesIO()
    with zipfile.ZipFile(polyglot, "w") as zipped:
        zipped.writestr("%PDF-1.7 lisez-moi.txt", "...")  # the header lands within the first 1024 bytes

    assert refusal(polyglot.getvalue() + samples.report_pdf()).en.startswith(
        "content type not accepted: application/zip"
    )


def test_an_image_whose_metadata_mentions_pdf_is_still_an_image() -> None:
    photo = samples.jpeg()
    commented = photo[:2] + b"\xff\xfe\x00\x12%PDF-1.7 scan 12" + photo[2:]  # a COM segment

    assert check_content(commented, max_size=LIMIT).kind == "jpeg"


def test_a_zip_and_a_word_document_are_refused() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("ordonnance.txt", "Amoxicilline 1 g")
    word_97 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)  # OLE2 compound file header

    assert "application/zip" in refusal(archive.getvalue()).en
    assert "content type not accepted" in refusal(word_97).en


# --- PDF: active content is refused wherever it hides ----------------------------------------------------------


def test_javascript_run_on_opening_is_refused() -> None:
    def open_action(pdf: pikepdf.Pdf) -> None:
        pdf.Root.OpenAction = pdf.make_indirect(samples.javascript_action(pdf))

    assert "(/OpenAction)" in pdf_refusal(open_action)


def test_document_level_javascript_in_the_names_tree_is_refused() -> None:
    def names_tree(pdf: pikepdf.Pdf) -> None:
        scripts = pikepdf.Array([pikepdf.String("init"), pdf.make_indirect(samples.javascript_action(pdf))])
        pdf.Root.Names = pikepdf.Dictionary(JavaScript=pikepdf.Dictionary(Names=scripts))

    assert "(/JavaScript)" in pdf_refusal(names_tree)


def test_an_additional_action_on_a_page_is_refused() -> None:
    def page_open(pdf: pikepdf.Pdf) -> None:
        pdf.pages[0].obj.AA = pikepdf.Dictionary(O=samples.javascript_action(pdf))

    assert "(/AA)" in pdf_refusal(page_open)


def test_a_link_that_launches_a_program_is_refused() -> None:
    def launch(pdf: pikepdf.Pdf) -> None:
        action = pikepdf.Dictionary(
            S=pikepdf.Name.Launch, F=pikepdf.String("C:\\Windows\\System32\\calc.exe")
        )
        pdf.pages[0].obj.Annots = pdf.make_indirect(pikepdf.Array([link(action)]))

    assert "(/Launch)" in pdf_refusal(launch)


def test_an_attached_file_is_refused() -> None:
    def attach(pdf: pikepdf.Pdf) -> None:
        pdf.attachments["ordonnance.exe"] = pikepdf.AttachedFileSpec(
            pdf, b"MZ\x90\x00", mime_type="text/plain"
        )

    assert "(/EmbeddedFile" in pdf_refusal(attach)


def test_javascript_hidden_inline_several_levels_deep_in_a_page_is_found() -> None:
    """The trap STACK.md warns about: no indirect object leads to the action, only direct ones."""

    def hide(pdf: pikepdf.Pdf) -> None:
        inline = pikepdf.Dictionary(A=samples.javascript_action(pdf))
        pdf.pages[0].obj.PieceInfo = pikepdf.Dictionary(
            Outil=pikepdf.Dictionary(Private=pikepdf.Array([pikepdf.Dictionary(Etape=inline)]))
        )

    hidden = samples.altered_pdf(hide)
    with pikepdf.open(io.BytesIO(hidden)) as pdf:
        deepest = pdf.pages[0].obj.PieceInfo.Outil.Private[0].Etape.A
        assert not deepest.is_indirect  # really inline, four levels under the page

    assert "(/JS)" in str(refusal(hidden))


def test_escaped_names_are_read_as_the_reader_reads_them() -> None:
    escaped = samples.raw_pdf(
        catalog=b"/Open#41ction 4 0 R", extra=(b"<< /S /J#61vaScript /J#53 (app.alert\\(1\\)) >>",)
    )

    assert "(/OpenAction)" in str(refusal(escaped))


def test_a_repeated_key_that_readers_may_resolve_differently_is_refused() -> None:
    """qpdf keeps the last /S (a harmless URI); a reader keeping the first would run JavaScript."""
    action = b"<< /S /JavaScript /S /URI /URI (https://ameli.fr) >>"
    twice = samples.raw_pdf(
        page=b"/Annots [<< /Type /Annot /Subtype /Link /Rect [0 0 9 9] /A " + action + b" >>]"
    )

    assert refusal(twice).fr == "PDF ambigu (clé répétée ou imbrication excessive)"


def test_web_and_mail_links_are_kept_but_file_and_javascript_uris_are_refused() -> None:
    def links_to(*uris: str) -> bytes:
        def add(pdf: pikepdf.Pdf) -> None:
            actions = [pikepdf.Dictionary(S=pikepdf.Name.URI, URI=pikepdf.String(uri)) for uri in uris]
            pdf.pages[0].obj.Annots = pikepdf.Array([link(action) for action in actions])

        return samples.altered_pdf(add)

    assert check_content(links_to("https://www.ameli.fr", "mailto:secretariat@chu.fr"), max_size=LIMIT)
    assert "(/URI)" in str(refusal(links_to("https://ameli.fr", "file:///C:/Windows/System32/calc.exe")))
    assert "(/URI)" in str(refusal(links_to("JavaScript:app.alert(1)")))


def test_a_font_named_like_an_action_key_is_only_a_font() -> None:
    def rename(pdf: pikepdf.Pdf) -> None:
        fonts = pdf.pages[0].obj.Resources.Font
        fonts.AA = fonts.F1

    assert check_content(samples.altered_pdf(rename), max_size=LIMIT).kind == "pdf"


def test_a_resource_dictionary_also_used_as_an_action_is_still_checked_as_one() -> None:
    def share(pdf: pikepdf.Pdf) -> None:
        fonts = pdf.pages[0].obj.Resources.Font
        fonts.JS = pikepdf.String("app.alert(1)")
        pdf.pages[0].obj.Annots = pikepdf.Array([link(fonts)])

    assert "(/JS)" in pdf_refusal(share)


def test_encrypted_pdfs_are_refused_with_or_without_a_password_to_open_them() -> None:
    locked = samples.altered_pdf(lambda pdf: None, encryption=pikepdf.Encryption(owner="o", user="u", R=6))
    restricted = samples.altered_pdf(lambda pdf: None, encryption=pikepdf.Encryption(owner="o", user="", R=6))

    assert refusal(locked).en == "password-protected PDF refused"
    assert refusal(restricted).en == "encrypted PDF refused"


def test_a_truncated_pdf_is_refused() -> None:
    report = samples.report_pdf()

    for cut in (len(report) // 2, len(report) - 40):
        assert refusal(report[:cut]).en == "unreadable or damaged PDF"


def test_bytes_that_only_start_like_a_pdf_are_refused() -> None:
    assert refusal(b"%PDF-1.7\nBonjour, ceci n'est pas un PDF.\n").en == "unreadable or damaged PDF"


def test_the_header_may_come_late_but_within_1024_bytes() -> None:
    report = samples.report_pdf()

    assert check_content(b" " * 1000 + report, max_size=LIMIT).kind == "pdf"
    # Past 1024 bytes readers stop looking: the bytes are judged as what they then are, here broken text.
    assert refusal(b" " * 2000 + report).en.startswith("text that is not UTF-8")


def test_cycles_and_long_chains_of_objects_are_walked_once() -> None:
    chain = (*(b"<< /Next %d 0 R >>" % (number + 1) for number in range(4, 2004)), b"<< /Next 4 0 R >>")

    assert (
        check_content(samples.raw_pdf(catalog=b"/Outlines 4 0 R", extra=chain), max_size=LIMIT).kind == "pdf"
    )


def test_absurdly_nested_direct_objects_are_refused() -> None:
    def nested(depth: int) -> bytes:
        return samples.raw_pdf(page=b"/Deep " + b"[" * depth + b"]" * depth)

    assert check_content(nested(50), max_size=LIMIT).kind == "pdf"
    assert refusal(nested(150)).en == "PDF nested too deeply"
    assert refusal(nested(600)).en == "ambiguous PDF (repeated key or excessive nesting)"  # qpdf drops it


def test_a_pdf_beyond_the_walking_budget_is_refused_rather_than_walked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(checks, "_PDF_BUDGET", 30)

    assert refusal(samples.report_pdf(pages=5)).en == "PDF too complex (too many objects)"


def link(action: pikepdf.Object) -> pikepdf.Dictionary:
    return pikepdf.Dictionary(
        Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Link, Rect=pikepdf.Array([72, 700, 300, 720]), A=action
    )


# --- CDA R2 ----------------------------------------------------------------------------------------------------


def test_a_cda_with_a_structured_body_is_accepted_as_text_xml() -> None:
    checked = check_content(samples.cda_structured(), declared_type="application/hl7-v3+xml", max_size=LIMIT)

    assert (checked.kind, checked.media_type) == ("cda", "text/xml")


def test_a_cda_without_xml_declaration_is_a_cda_even_if_libmagic_calls_it_html() -> None:
    bare = samples.cda_structured().split(b"\n", 2)[2]  # its narrative <table> makes libmagic say text/html

    assert check_content(bare, max_size=LIMIT).kind == "cda"


def test_a_cda_carrying_a_pdf_in_a_non_xml_body_is_accepted() -> None:
    wrapped = samples.cda_non_xml(samples.report_pdf())

    assert check_content(wrapped, declared_type="text/xml", max_size=LIMIT).kind == "cda"


def test_the_document_inside_a_non_xml_body_passes_the_same_checks() -> None:
    def open_action(pdf: pikepdf.Pdf) -> None:
        pdf.Root.OpenAction = samples.javascript_action(pdf)

    smuggled = samples.cda_non_xml(samples.altered_pdf(open_action))
    mislabelled = samples.cda_non_xml(samples.png(), media_type="application/pdf")

    assert refusal(smuggled).en == "nonXMLBody: PDF with active content refused (/OpenAction)"
    assert refusal(mislabelled).fr == (
        "Corps nonXMLBody : Type incohérent : déclaré application/pdf, contenu image/png"
    )


def test_external_entities_are_refused() -> None:
    xxe = b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<x>&e;</x>'

    refused = refusal(xxe)

    assert refused.en == "XML with a DOCTYPE refused (no DTDs or entities)"


def test_the_billion_laughs_are_refused() -> None:
    entities = b"".join(
        b'<!ENTITY lol%d "%s">' % (level, b"&lol%d;" % (level - 1) * 10) for level in range(1, 10)
    )
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">' + entities + b"]><lolz>&lol9;</lolz>"
    )

    assert "DOCTYPE" in refusal(laughs).en


def test_xml_that_is_not_a_cda_is_refused() -> None:
    refused = refusal(
        b'<?xml version="1.0"?><Bundle xmlns="http://hl7.org/fhir"><type value="document"/></Bundle>'
    )

    assert refused.fr == "XML qui n'est pas un document CDA R2"


def test_a_cda_without_a_body_is_refused() -> None:
    assert "without a body" in refusal(samples.cda("<section/>")).en


def test_a_non_xml_body_over_10_mb_is_beyond_the_parser_limits() -> None:
    """huge_tree stays off (STACK.md), so libxml2 keeps its 10 MB cap on one text node: about 7.5 MB of
    embedded document once in base64."""
    scan = samples.jpeg()
    big = samples.cda_non_xml(scan[:-2] + bytes(8 * 1024 * 1024) + scan[-2:], media_type="image/jpeg")

    assert refusal(big).en == "XML beyond the parser's limits (a text over 10 MB or nesting too deep)"


def test_malformed_xml_is_refused_with_where_but_not_what() -> None:
    broken = samples.cda_structured().replace(b"</title>", b"</titre-secret-du-patient>", 1)

    refused = refusal(broken)

    assert refused.en.startswith("XML not well-formed (line 7, column")
    assert "secret" not in str(refused)


# --- images and text -------------------------------------------------------------------------------------------


def test_a_png_and_a_jpeg_are_accepted() -> None:
    assert check_content(samples.png(), declared_type="image/png", max_size=LIMIT).media_type == "image/png"
    assert (
        check_content(samples.jpeg(), declared_type="image/jpeg", max_size=LIMIT).media_type == "image/jpeg"
    )


def test_a_jpeg_padded_with_zeros_is_accepted_but_a_truncated_one_is_not() -> None:
    photo = samples.jpeg()

    assert check_content(photo + bytes(512), max_size=LIMIT).kind == "jpeg"
    assert refusal(photo[:-10]).en == "truncated JPEG (no FF D9 end marker)"


def test_a_png_must_be_whole_and_end_at_iend() -> None:
    image = samples.png()

    assert refusal(image[:-5]).en == "truncated PNG (no IEND chunk)"
    assert refusal(image + b"<script>alert(1)</script>").en == "PNG followed by data after IEND"


def test_utf8_text_with_a_bom_is_accepted() -> None:
    note = "\ufeffCompte rendu : fièvre à 39,5 °C depuis 48 h.\r\n\tÀ revoir le 12/03.\f".encode()

    assert check_content(note, declared_type="text/plain; charset=utf-8", max_size=LIMIT).kind == "text"


def test_text_with_a_nul_or_a_control_character_is_refused() -> None:
    assert refusal(b"Compte rendu\x00secret").en == "text containing a NUL byte (position 12)"
    assert "control character" in refusal("Alerte\u0007\u0085".encode()).en


def test_text_that_is_not_utf8_is_refused() -> None:
    refused = refusal("Fièvre à 39 °C".encode("latin-1"))

    assert refused.en == "text that is not UTF-8 (invalid byte near position 2)"


def test_refusals_never_quote_the_content() -> None:
    secret = "Jean-Dupont-VIH-positif"
    attempts = [
        f"<?xml version='1.0'?><{secret}/>".encode(),
        f"<{secret}><unclosed></{secret}>".encode(),
        f"{secret}\x00".encode(),
        f"{secret} é".encode("latin-1"),
        b"%PDF-1.7\n" + secret.encode(),
    ]

    for data in attempts:
        assert secret not in str(refusal(data))


def test_a_declared_type_is_shown_only_as_printable_ascii() -> None:
    refused = refusal(samples.png(), declared_type="image/\x1b[31mrouge" + "x" * 200)

    assert refused.en.startswith("type mismatch: declared image/?[31mrougexxx")
    assert "\x1b" not in str(refused) and len(refused.en) < 150


# --- never anything but a verdict ------------------------------------------------------------------------------


def verdict(data: bytes) -> None:
    refused: ContentRefused | None = None
    try:
        checked = check_content(data, max_size=8192)
    except ContentRefused as exc:
        refused = exc
    if refused is None:
        assert checked.kind in KINDS
    else:
        assert refused.fr and refused.en and refused.code in ("invalid", "too-long")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_any_bytes_give_a_verdict(data: bytes) -> None:
    verdict(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_any_bytes_after_a_pdf_header_give_a_verdict(data: bytes) -> None:
    verdict(b"%PDF-1.7\n" + data)
