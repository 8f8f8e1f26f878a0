"""Opening an IHE XDM package safely (SECURITY V12 12.1.3, FHIR/IHE attack 8).

An XDM package (ITI TF-1 §16, ITI TF-2 ITI-32 §3.32.4.1.3) is a ZIP holding `IHE_XDM/SUBSETnn/METADATA.XML`
(one ebRIM submission set per subset) beside the documents of that subset, plus `INDEX.HTM` and `README.TXT`
at the root. It comes from outside: every limit is checked on the ZIP's central directory **before** a single
entry is decompressed, and nothing is ever written to disk:

1. the file itself: a regular file (not a symlink), at most `legacy_package_max_bytes`;
2. the end-of-central-directory record, read by hand: the number of entries and the directory's size are
   bounded before `zipfile` parses the directory (a directory of millions of entries would otherwise be
   loaded first); split archives are refused;
3. every entry: a safe name (`entry_name_problem`: no absolute path, drive letter, `..`, backslash, control
   character, empty or dot component), no duplicate (case- and normalisation-insensitive, since extracting on
   a case-insensitive file system would merge them), a regular file or folder (no symlink, device, FIFO), not
   encrypted, stored or deflated only, no nested archive (by name), its declared size within
   `legacy_entry_max_bytes`, and within `legacy_max_ratio` of its compressed size once it is large enough for
   a bomb to matter; the declared sizes together within `legacy_max_total_bytes`;
4. reading an entry: at most its declared size (zipfile stops there and checks the CRC), and never more than
   the limit even if the directory lied; content that is itself an archive is refused.

`zipfile` also refuses a local header whose name differs from the central directory's."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
import struct
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from espace_sante.settings import Settings

__all__ = [
    "EntryRefused",
    "Limits",
    "Package",
    "PackageRefused",
    "Subset",
    "entry_name_problem",
]

#: Entries above this size must respect the compression ratio: below it a bomb cannot hurt, and small
#: repetitive files (an empty CDA section, a README) legitimately compress far better than documents.
RATIO_FLOOR = 1024 * 1024
_MAX_NAME = 1024
_MAX_COMPONENT = 255
#: Archives inside the package are never opened (ITI-32 has no nesting): refused by name and by content.
_ARCHIVE_SUFFIXES = (".zip", ".jar", ".7z", ".rar", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".zst", ".cab")
_ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08", b"\x1f\x8b", b"7z\xbc\xaf\x27\x1c", b"Rar!")
_DRIVE = re.compile(r"^[A-Za-z]:")
_WINDOWS_RESERVED = frozenset(':*?"<>|')
_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_ZIP_FLAG_ENCRYPTED = 0x1
_ZIP_FLAG_STRONG_ENCRYPTION = 0x40


class PackageRefused(Exception):
    """The package is refused as a whole, before anything in it was read. `fr`/`en` name the problem and the
    entry when there is one (entry names are paths inside the package, never document content)."""

    def __init__(self, fr: str, en: str) -> None:
        super().__init__(f"{fr} / {en}")
        self.fr = fr
        self.en = en


class EntryRefused(PackageRefused):
    """One entry could not be read (damaged, larger than declared, an archive): only its document is set aside."""


@dataclass(frozen=True)
class Limits:
    package_bytes: int
    entries: int
    total_bytes: int
    entry_bytes: int
    ratio: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            package_bytes=settings.legacy_package_max_bytes,
            entries=settings.legacy_max_entries,
            total_bytes=settings.legacy_max_total_bytes,
            entry_bytes=settings.legacy_entry_max_bytes,
            ratio=settings.legacy_max_ratio,
        )


def entry_name_problem(name: str) -> str | None:
    """Why a ZIP entry name is unsafe to use as a path (in English, for messages), or None. An accepted name,
    joined to any root folder, stays inside it whatever the platform's path rules (tests/legacy: hypothesis)."""
    if not name:
        return "empty name"
    if len(name) > _MAX_NAME:
        return "name too long"
    if "\\" in name:
        return "backslash in name"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "control character in name"
    if name.startswith("/") or _DRIVE.match(name):
        return "absolute path"
    if any(c in _WINDOWS_RESERVED for c in name):
        # ":" makes drive-relative paths ("C:x") and NTFS alternate streams ("a.pdf:x"); ITI-32 names are
        # plain 8.3 names anyway.
        return "character reserved on Windows in name"
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    for part in parts:
        if part == "..":
            return "parent folder (..) in path"
        if part in ("", "."):
            return "empty or '.' path component"
        if len(part) > _MAX_COMPONENT:
            return "path component too long"
        if part != part.strip() or part.endswith("."):
            # Windows drops trailing dots and spaces: "a. " and "a" would be one file.
            return "leading or trailing space or dot in a path component"
    return None


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _declared_directory(stream: IO[bytes], size: int) -> tuple[int, int]:
    """(entries, central directory size) from the end-of-central-directory record (APPNOTE 4.3.16), or its
    ZIP64 form (4.3.14-15). Read before zipfile parses the directory, so that its size is bounded first."""
    tail = min(size, 22 + 65535)
    stream.seek(size - tail)
    data = stream.read(tail)
    at = data.rfind(_EOCD)
    if at < 0 or len(data) - at < 22:
        raise PackageRefused("ce fichier n'est pas une archive ZIP", "this file is not a ZIP archive")
    disk, cd_disk, _here, entries, cd_size, _offset, _comment = struct.unpack(
        "<HHHHIIH", data[at + 4 : at + 22]
    )
    if disk != 0 or cd_disk != 0:
        raise PackageRefused("archive ZIP en plusieurs parties refusée", "split ZIP archive refused")
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        locator_at = size - tail + at - 20
        if locator_at < 0:
            raise PackageRefused("archive ZIP64 illisible", "unreadable ZIP64 archive")
        stream.seek(locator_at)
        locator = stream.read(20)
        if not locator.startswith(_EOCD64_LOCATOR):
            raise PackageRefused("archive ZIP64 illisible", "unreadable ZIP64 archive")
        (record_at,) = struct.unpack("<Q", locator[8:16])
        if record_at + 56 > size:
            raise PackageRefused("archive ZIP64 illisible", "unreadable ZIP64 archive")
        stream.seek(record_at)
        record = stream.read(56)
        if not record.startswith(_EOCD64):
            raise PackageRefused("archive ZIP64 illisible", "unreadable ZIP64 archive")
        entries, _total, cd_size = struct.unpack("<QQQ", record[24:48])
    return int(entries), int(cd_size)


@dataclass(frozen=True)
class Subset:
    """One `IHE_XDM/<folder>/` with its METADATA.XML (ITI-32: one submission set per subset)."""

    folder: str
    metadata: str


class Package:
    """An XDM package whose central directory passed every check. Entries are read one at a time, in memory,
    bounded; the caller names them by their path in the package (`resolve` turns a document's URI into one).

    Use as a context manager; `digest` is the SHA-256 of the package file (the package's identity in the
    set-aside store: its file name may carry a person's name)."""

    def __init__(self, path: Path, limits: Limits) -> None:
        self.limits = limits
        try:
            info = os.lstat(path)
        except OSError as exc:
            raise PackageRefused(
                f"fichier illisible ({type(exc).__name__})", f"unreadable file ({type(exc).__name__})"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise PackageRefused(
                "pas un fichier ordinaire (lien symbolique, dossier…)",
                "not a regular file (symbolic link, folder…)",
            )
        if info.st_size > limits.package_bytes:
            raise PackageRefused(
                f"paquet trop volumineux : {info.st_size} octets, {limits.package_bytes} au plus",
                f"package too large: {info.st_size} bytes, at most {limits.package_bytes}",
            )
        self._file = path.open("rb")
        try:
            self.digest = self._hash()
            entries, cd_size = _declared_directory(self._file, info.st_size)
            if entries > limits.entries:
                raise PackageRefused(
                    f"trop d'entrées dans l'archive : {entries}, {limits.entries} au plus",
                    f"too many entries in the archive: {entries}, at most {limits.entries}",
                )
            if cd_size > info.st_size or cd_size > max(1024 * 1024, limits.entries * 2 * (46 + _MAX_NAME)):
                raise PackageRefused(
                    "répertoire central de l'archive incohérent", "inconsistent central directory"
                )
            self._file.seek(0)
            try:
                self._zip = zipfile.ZipFile(self._file)
            except (zipfile.BadZipFile, ValueError, EOFError) as exc:
                raise PackageRefused(
                    f"archive ZIP illisible ({exc})", f"unreadable ZIP archive ({exc})"
                ) from None
            try:
                self._infos = self._check_directory(self._zip.infolist())
                self.subsets = self._find_subsets()
            except PackageRefused:
                self._zip.close()
                raise
        except BaseException:
            self._file.close()
            raise

    def _hash(self) -> str:
        digest = hashlib.sha256()
        for block in iter(lambda: self._file.read(1024 * 1024), b""):
            digest.update(block)
        return digest.hexdigest()

    def _check_directory(self, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
        if len(infos) > self.limits.entries:
            raise PackageRefused(
                f"trop d'entrées dans l'archive : {len(infos)}, {self.limits.entries} au plus",
                f"too many entries in the archive: {len(infos)}, at most {self.limits.entries}",
            )
        seen: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            name = info.filename
            shown = name if name.isprintable() and len(name) <= 200 else repr(name[:200])
            problem = entry_name_problem(name)
            if problem is not None:
                raise PackageRefused(
                    f"entrée « {shown} » refusée : chemin dangereux ({problem})",
                    f"entry “{shown}” refused: unsafe path ({problem})",
                )
            folded = _fold(name)
            if folded in seen:
                raise PackageRefused(
                    f"entrée « {shown} » en double dans l'archive",
                    f"duplicate entry “{shown}” in the archive",
                )
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                what = "lien symbolique" if kind == stat.S_IFLNK else "fichier spécial"
                what_en = "symbolic link" if kind == stat.S_IFLNK else "special file"
                raise PackageRefused(
                    f"entrée « {shown} » refusée : {what}", f"entry “{shown}” refused: {what_en}"
                )
            if info.flag_bits & (_ZIP_FLAG_ENCRYPTED | _ZIP_FLAG_STRONG_ENCRYPTION):
                raise PackageRefused(
                    f"entrée « {shown} » chiffrée : refusée", f"encrypted entry “{shown}” refused"
                )
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise PackageRefused(
                    f"entrée « {shown} » : méthode de compression {info.compress_type} non acceptée",
                    f"entry “{shown}”: compression method {info.compress_type} not accepted",
                )
            if not info.is_dir() and name.lower().endswith(_ARCHIVE_SUFFIXES):
                raise PackageRefused(
                    f"entrée « {shown} » : archive imbriquée refusée",
                    f"entry “{shown}”: nested archive refused",
                )
            if info.file_size > self.limits.entry_bytes:
                raise PackageRefused(
                    f"entrée « {shown} » trop volumineuse : {info.file_size} octets déclarés, "
                    f"{self.limits.entry_bytes} au plus",
                    f"entry “{shown}” too large: {info.file_size} bytes declared, at most "
                    f"{self.limits.entry_bytes}",
                )
            if info.file_size >= RATIO_FLOOR and info.file_size > self.limits.ratio * max(
                info.compress_size, 1
            ):
                raise PackageRefused(
                    f"entrée « {shown} » : taux de compression suspect ({info.file_size} octets pour "
                    f"{info.compress_size} compressés, bombe ZIP)",
                    f"entry “{shown}”: suspicious compression ratio ({info.file_size} bytes from "
                    f"{info.compress_size} compressed, ZIP bomb)",
                )
            total += info.file_size
            if total > self.limits.total_bytes:
                raise PackageRefused(
                    f"contenu total de l'archive trop volumineux (plus de {self.limits.total_bytes} octets)",
                    f"archive content too large in total (more than {self.limits.total_bytes} bytes)",
                )
            seen[folded] = info
        return seen

    def _find_subsets(self) -> list[Subset]:
        """The subsets: `IHE_XDM/<folder>/METADATA.XML` (ITI-32 §3.32.4.1.3.2; names compared without case,
        as media written on other systems change it)."""
        subsets = []
        for folded, info in sorted(self._infos.items()):
            parts = folded.split("/")
            if len(parts) == 3 and parts[0] == "ihe_xdm" and parts[2] == "metadata.xml" and not info.is_dir():
                subsets.append(Subset(posixpath.dirname(info.filename), info.filename))
        if not subsets:
            raise PackageRefused(
                "pas un paquet IHE XDM : aucun IHE_XDM/<sous-ensemble>/METADATA.XML",
                "not an IHE XDM package: no IHE_XDM/<subset>/METADATA.XML",
            )
        return subsets

    def resolve(self, subset: Subset, uri: str) -> str | None:
        """The entry a DocumentEntry's URI names: a path relative to its subset's folder (ITI-32
        §3.32.4.1.3.2), never outside it. None when unsafe or absent."""
        if not uri or "://" in uri or uri.startswith(("/", "\\")) or entry_name_problem(uri) is not None:
            return None
        info = self._infos.get(_fold(f"{subset.folder}/{uri}"))
        return None if info is None or info.is_dir() else info.filename

    def names(self) -> Iterator[str]:
        return (info.filename for info in self._infos.values() if not info.is_dir())

    def read(self, name: str) -> bytes:
        """The bytes of one entry, at most `entry_bytes` whatever the directory declared."""
        info = self._infos.get(_fold(name))
        if info is None:
            raise EntryRefused(f"entrée « {name} » absente", f"entry “{name}” missing")
        limit = self.limits.entry_bytes
        try:
            with self._zip.open(info) as member:
                data = member.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise EntryRefused(
                f"entrée « {name} » endommagée ({type(exc).__name__})",
                f"damaged entry “{name}” ({type(exc).__name__})",
            ) from None
        if len(data) > limit:
            raise EntryRefused(
                f"entrée « {name} » plus grande que {limit} octets",
                f"entry “{name}” larger than {limit} bytes",
            )
        if data.startswith(_ARCHIVE_MAGIC):
            raise EntryRefused(
                f"entrée « {name} » : archive imbriquée refusée", f"entry “{name}”: nested archive refused"
            )
        return data

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def __enter__(self) -> Package:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
