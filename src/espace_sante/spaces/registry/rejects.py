"""The rejects file: one CSV line per refused registry row (line, field, reason), written as rows are read, so
that an insurer's operator fixes the rows and sends them again. Nothing refused is lost silently."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TextIO

from espace_sante.spaces.registry.rows import Beneficiary, Rejected, Row


@dataclass
class Tally:
    read: int = 0
    valid: int = 0
    rejected: int = 0
    by_field: dict[str, int] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.read += 1
        if isinstance(row, Beneficiary):
            self.valid += 1
        else:
            self.rejected += 1
            self.by_field[row.field or "(ligne)"] = self.by_field.get(row.field or "(ligne)", 0) + 1


class RejectsFile:
    """`with RejectsFile(path) as rejects: rejects.write(rejected)`; no file when `path` is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh: TextIO | None = None
        self._writer: csv.DictWriter[str] | None = None

    def __enter__(self) -> RejectsFile:
        if self.path is not None:
            self._fh = self.path.open("w", encoding="utf-8", newline="")
            self._writer = csv.DictWriter(self._fh, fieldnames=("line", "field", "reason"))
            self._writer.writeheader()
        return self

    def write(self, rejected: Rejected) -> None:
        if self._writer is not None:
            self._writer.writerow({"line": rejected.line, "field": rejected.field, "reason": rejected.reason})

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fh is not None:
            self._fh.close()
