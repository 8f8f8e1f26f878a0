"""The insurer's registry of beneficiaries, read row by row (docs/registry-format.md).

A file is UTF-8 CSV with a header row, or NDJSON with the same keys. `read_registry` streams it: memory stays
constant whatever the size, and each row comes out either as a checked `Beneficiary` or as a `Rejected` that
names its line, its field and the reason, so that nothing is lost silently. A file whose header is wrong is
refused as a whole (`RegistryFormatError`) before any row is read."""

from __future__ import annotations

import csv
import re
import unicodedata
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import BinaryIO, Literal

import orjson

from espace_sante import clock
from espace_sante.fhir.identifiers import IdentifierError, validate_nir
from espace_sante.fhir.text import bidi_control

COLUMNS = (
    "nir",
    "last_name",
    "first_names",
    "birth_date",
    "sex",
    "address_line",
    "postal_code",
    "city",
    "email",
    "representative_1_nir",
    "representative_2_nir",
    "death_date",
)
MAX_FIELD = 200
MAX_LINE_BYTES = 8192
OLDEST_BIRTH = date(1880, 1, 1)

_POSTAL_CODE = re.compile(r"^(?:0[1-9]|[1-8]\d|9[0-8])\d{3}$")  # metropolitan and overseas (97x, 98x)
# Deliberately simple: one @, a dot in the domain, no spaces or controls. Delivery proves the rest.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A line with any of these (controls, or the bidirectional controls of fhir/text.py) goes through `_text`.
_UNCLEAN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (decoded with surrogateescape)


class RegistryFormatError(ValueError):
    """The file cannot be read as a registry at all (header, format): nothing of it is imported."""


@dataclass(frozen=True)
class Beneficiary:
    line: int
    nir: str
    last_name: str
    first_names: str
    birth_date: date
    sex: Literal["F", "M", "U"]
    address_line: str
    postal_code: str
    city: str
    email: str | None
    representatives: tuple[str, ...]
    death_date: date | None

    def is_minor(self, on: date) -> bool:
        return _age(self.birth_date, on) < 18


@dataclass(frozen=True)
class Rejected:
    line: int
    field: str
    reason: str


Row = Beneficiary | Rejected


class _Bad(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def line_is_clean(text: str) -> bool:
    """Whether a whole line (or record) needs none of `_text`'s per-field repairs and checks: valid UTF-8, no
    control character, already NFC. Checked once per line, it spares each field the work (most lines pass);
    a field of a clean line is clean too (its delimiters are ASCII starters: NFC composes nothing across
    them)."""
    return (
        not _SURROGATE.search(text) and not _UNCLEAN.search(text) and unicodedata.is_normalized("NFC", text)
    )


def _text(values: dict[str, str], field: str, *, required: bool, clean: bool = False) -> str:
    """A field's text, trimmed and checked; for a `clean` row, only trimmed and measured."""
    if clean:
        value = (values.get(field, "") or "").strip()
    else:
        value = unicodedata.normalize("NFC", values.get(field, "") or "").strip()
        if _SURROGATE.search(value):
            raise _Bad(field, "encodage invalide (UTF-8 attendu) / invalid encoding (UTF-8 expected)")
        if _CONTROL.search(value):
            raise _Bad(field, "caractère de contrôle / control character")
        if (hidden := bidi_control(value)) is not None:
            # A name that reads backwards on the notice and in the space (issue 16 #5).
            raise _Bad(
                field,
                f"caractère invisible {hidden} (contrôle du sens d'écriture) / invisible character {hidden} "
                "(bidirectional control)",
            )
    if len(value) > MAX_FIELD:
        raise _Bad(field, f"trop long ({len(value)} > {MAX_FIELD}) / too long")
    if required and not value:
        raise _Bad(field, "obligatoire / required")
    return value


def _date(values: dict[str, str], field: str, *, required: bool, today: date, clean: bool) -> date | None:
    raw = _text(values, field, required=required, clean=clean)
    if not raw:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            raise ValueError
        value = date.fromisoformat(raw)
    except ValueError:
        raise _Bad(
            field, f"date invalide « {raw[:20]} » : AAAA-MM-JJ attendu / invalid date: YYYY-MM-DD"
        ) from None
    if value > today:
        raise _Bad(field, "date dans le futur / date in the future")
    if value < OLDEST_BIRTH:
        raise _Bad(field, f"date avant {OLDEST_BIRTH.year} / date before {OLDEST_BIRTH.year}")
    return value


def _nir(values: dict[str, str], field: str, *, required: bool, clean: bool) -> str | None:
    raw = _text(values, field, required=required, clean=clean)
    if not raw:
        return None
    try:
        return validate_nir(raw)
    except IdentifierError as exc:
        raise _Bad(field, exc.message) from None


def check_row(values: dict[str, str], line: int, *, today: date, clean: bool = False) -> Row:
    """One row's values (strings by column) as a Beneficiary, or the first problem found. `clean`: the
    caller checked the whole line with `line_is_clean` (the same answers, less work)."""
    try:
        nir = _nir(values, "nir", required=True, clean=clean)
        assert nir is not None
        last_name = _text(values, "last_name", required=True, clean=clean)
        first_names = _text(values, "first_names", required=True, clean=clean)
        born = _date(values, "birth_date", required=True, today=today, clean=clean)
        assert born is not None
        sex = _text(values, "sex", required=True, clean=clean).upper()
        if sex not in ("F", "M", "U"):
            raise _Bad("sex", f"« {sex[:5]} » : F, M ou U attendu / F, M or U expected")
        address = {
            f: _text(values, f, required=False, clean=clean) for f in ("address_line", "postal_code", "city")
        }
        if any(address.values()) and not all(address.values()):
            missing = next(f for f, v in address.items() if not v)
            raise _Bad(missing, "adresse incomplète (ligne, code postal et ville) / incomplete address")
        if address["postal_code"] and not _POSTAL_CODE.match(address["postal_code"]):
            raise _Bad("postal_code", "code postal : 5 chiffres attendus / postal code: 5 digits expected")
        email = _text(values, "email", required=False, clean=clean) or None
        if email is not None and (len(email) > 254 or not _EMAIL.match(email)):
            raise _Bad("email", "adresse électronique invalide / invalid e-mail address")
        representatives = []
        for field in ("representative_1_nir", "representative_2_nir"):
            rep = _nir(values, field, required=False, clean=clean)
            if rep is None:
                continue
            if rep == nir:
                raise _Bad(
                    field,
                    "une personne ne se représente pas elle-même / a person cannot represent themselves",
                )
            if rep in representatives:
                raise _Bad(field, "représentant en double / duplicate representative")
            representatives.append(rep)
        if representatives and _age(born, today) >= 18:
            raise _Bad("representative_1_nir", "représentant pour un majeur / representative of an adult")
        died = _date(values, "death_date", required=False, today=today, clean=clean)
        if died is not None and died < born:
            raise _Bad("death_date", "décès avant la naissance / death before birth")
    except _Bad as bad:
        return Rejected(line, bad.field, bad.reason)
    return Beneficiary(
        line,
        nir,
        last_name,
        first_names,
        born,
        sex,  # type: ignore[arg-type]
        address["address_line"],
        address["postal_code"],
        address["city"],
        email,
        tuple(representatives),
        died,
    )


def _check_header(names: Iterable[str]) -> None:
    seen = [n.strip() for n in names]
    unknown = sorted(set(seen) - set(COLUMNS))
    missing = [c for c in COLUMNS if c not in seen]
    if unknown or missing or len(seen) != len(set(seen)):
        parts = []
        if missing:
            parts.append(f"colonnes manquantes / missing columns: {', '.join(missing)}")
        if unknown:
            parts.append(f"colonnes inconnues / unknown columns: {', '.join(unknown)}")
        if len(seen) != len(set(seen)):
            parts.append("colonne en double / duplicate column")
        raise RegistryFormatError("en-tête invalide / invalid header: " + "; ".join(parts))


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each physical line, bounded in length (a line past the bound is cut to it and
    flagged by its length, so that one bad row cannot exhaust memory)."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while True:  # skip the rest of the over-long line
                more = stream.readline(MAX_LINE_BYTES + 1)
                if not more or more.endswith(b"\n"):
                    break
        yield number, raw


Keep = Callable[[str], bool]


def shard_of(nir_text: str, shards: int) -> int:
    """The shard (0 to `shards` - 1) of a row by the text of its `nir` field, as written (trimmed, upper
    case): the same person always falls in the same shard, so their rows apply in the file's order. A row
    with no readable `nir` (a malformed line) falls in shard 0, which alone reports it."""
    return zlib.crc32(nir_text.strip().upper().encode("utf-8", "surrogateescape")) % shards if nir_text else 0


def in_shard(shard: int, shards: int) -> Keep:
    """The rows of one shard, for `read_registry(keep=...)` (registry import --jobs)."""
    return lambda nir_text: shard_of(nir_text, shards) == shard


class Neighbours:
    """The latest rows of the other shards, as read and unchecked (`registry import --jobs --notify`): a
    minor's notice goes to their representatives, whose row is usually a few lines away in the file and, one
    time in two or more, in a shard another process is importing at that moment. Without these rows the
    minor waited for the run's last step, which reads the representatives back from the database (with two
    shards, 6 % of the rows and a fifth of the run's time). A row is checked, as its own shard checks it,
    only when a minor's representative is looked for; the `size` latest are kept (constant memory)."""

    def __init__(self, size: int = 16_384) -> None:
        self.size = size
        #: NIR as written -> (line number, the line's text (CSV) or its JSON object (NDJSON)).
        self.rows: OrderedDict[str, tuple[int, str | dict[str, object]]] = OrderedDict()
        self.header: list[str] = []
        self.today = clock.today()

    def add(self, nir_text: str, line: int, raw: str | dict[str, object]) -> None:
        rows = self.rows
        rows[nir_text] = (line, raw)
        if len(rows) > self.size:
            rows.popitem(last=False)

    def find(self, nir: str) -> Beneficiary | None:
        """The checked row of this (normalised) NIR if it is among the latest rows kept and valid."""
        kept = self.rows.get(nir)
        if kept is None:
            return None
        line, raw = kept
        if isinstance(raw, dict):
            row = _json_row(raw, line, self.today)
        else:
            try:
                fields = next(csv.reader([raw], strict=True))
            except csv.Error:
                return None
            if len(fields) != len(self.header):
                return None
            row = check_row(dict(zip(self.header, fields, strict=True)), line, today=self.today)
        return row if isinstance(row, Beneficiary) and row.nir == nir else None


def _read_csv(
    stream: BinaryIO, today: date, keep: Keep | None = None, neighbours: Neighbours | None = None
) -> Iterator[Row]:
    header: list[str] | None = None
    at = 0  # the index of `nir` in the header
    for number, raw in _lines(stream):
        if len(raw) > MAX_LINE_BYTES:
            if header is None:
                raise RegistryFormatError("en-tête trop long / header too long")
            if keep is None or keep(""):
                yield Rejected(number, "", f"ligne trop longue (> {MAX_LINE_BYTES} octets) / line too long")
            continue
        # Each line is decoded alone: a byte that is not UTF-8 spoils its own row only (surrogateescape keeps
        # it visible to the field checks, which reject it).
        text = raw.decode("utf-8", "surrogateescape")
        if number == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        # One record per physical line: a quoted field never spans lines in this format, so that a broken
        # quote costs one row, not the rest of the file.
        line = text.rstrip("\r\n") if text.endswith("\n") else text
        try:
            if '"' in line or "\r" in line or "\n" in line:
                fields = next(csv.reader([text], strict=True))
            else:  # no quoting: what csv.reader would give, for a fifth of its time (most lines)
                fields = line.split(",")
        except csv.Error as exc:
            if header is None:
                raise RegistryFormatError(f"en-tête illisible / unreadable header ({exc})") from None
            if keep is None or keep(""):
                yield Rejected(number, "", f"ligne CSV mal formée / malformed CSV line ({exc})")
            continue
        if header is None:
            _check_header(fields)
            header = [f.strip() for f in fields]
            at = header.index("nir")
            if neighbours is not None:
                neighbours.header, neighbours.today = header, today
            continue
        if keep is not None:
            nir_text = fields[at] if len(fields) == len(header) else ""
            if not keep(nir_text):  # another shard's row
                if neighbours is not None and nir_text:
                    neighbours.add(nir_text.strip(), number, line)
                continue
        if len(fields) != len(header):
            yield Rejected(
                number,
                "",
                f"{len(fields)} champs au lieu de {len(header)} / {len(fields)} fields, expected {len(header)}",
            )
            continue
        yield check_row(
            dict(zip(header, fields, strict=True)),
            number,
            today=today,
            clean=line_is_clean(text.rstrip("\r\n")),
        )
    if header is None:
        raise RegistryFormatError("fichier vide : en-tête attendu / empty file: header expected")


def _json_row(value: dict[str, object], line: int, today: date) -> Row:
    """One NDJSON object as a Beneficiary, or the first problem found."""
    unknown = sorted(set(value) - set(COLUMNS))
    if unknown:
        return Rejected(line, unknown[0], "champ inconnu / unknown field")
    bad = next((k for k, v in value.items() if v is not None and not isinstance(v, str)), None)
    if bad is not None:
        return Rejected(line, bad, "chaîne attendue / string expected")
    return check_row({k: str(v or "") for k, v in value.items()}, line, today=today)


def _read_ndjson(
    stream: BinaryIO, today: date, keep: Keep | None = None, neighbours: Neighbours | None = None
) -> Iterator[Row]:
    def mine(nir_text: object) -> bool:
        return keep is None or keep(nir_text if isinstance(nir_text, str) else "")

    if neighbours is not None:
        neighbours.today = today

    for number, raw in _lines(stream):
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            if mine(""):
                yield Rejected(number, "", f"ligne trop longue (> {MAX_LINE_BYTES} octets) / line too long")
            continue
        try:
            value = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw)
        except orjson.JSONDecodeError:
            if mine(""):
                yield Rejected(number, "", "JSON invalide / invalid JSON")
            continue
        if not isinstance(value, dict):
            if mine(""):
                yield Rejected(number, "", "objet JSON attendu / JSON object expected")
            continue
        nir_text = value.get("nir")
        if not mine(nir_text):  # another shard's row
            if neighbours is not None and isinstance(nir_text, str) and nir_text:
                neighbours.add(nir_text.strip(), number, value)
            continue
        yield _json_row(value, number, today)


def read_registry(
    stream: BinaryIO,
    *,
    fmt: Literal["csv", "ndjson"] | None = None,
    today: date | None = None,
    keep: Keep | None = None,
    neighbours: Neighbours | None = None,
) -> Iterator[Row]:
    """Stream a registry file (CSV by default; NDJSON when `fmt` says so or the first byte is `{`). With
    `keep` (`in_shard`), only the rows whose `nir` text it keeps are checked and given: the others are
    skipped before any check, as cheaply as possible (another process imports them), and kept unchecked in
    `neighbours` when given."""
    today = today or clock.today()
    if fmt is None:
        head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
        fmt = "ndjson" if head.removeprefix(b"\xef\xbb\xbf")[:1] == b"{" else "csv"
    read = _read_ndjson if fmt == "ndjson" else _read_csv
    return read(stream, today, keep, neighbours)
