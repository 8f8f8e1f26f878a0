"""The portal's upload reader: a streaming multipart/form-data parser that keeps one file up to a limit and
the form's other fields, so that a file too large is answered on the form with what the person typed, without
reading gigabytes (web/holder/documents.py « Ajouter un document »)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from espace_sante.errors import PayloadTooLarge

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks


@dataclass
class Upload:
    """What an upload form carried: its fields, the file's bytes (at most the limit) and whether it was
    larger than the limit."""

    fields: dict[str, str]
    filename: str | None = None
    content: bytes = b""
    too_large: bool = False
    malformed: bool = False


class UploadParser:
    """A streaming multipart/form-data reader: fields up to 8 KiB each, one file (the part named `file_field`)
    kept up to `limit` bytes. Past the limit the file's bytes are dropped and reading goes on, so that the browser gets the answer and
    the form's other fields are kept, until `drain` bytes have come; then it stops reading altogether."""

    MAX_FIELD = 8 * 1024
    MAX_PARTS = 10

    def __init__(self, limit: int, drain: int, *, file_field: str = "fichier") -> None:
        self.limit = limit
        self.drain = drain
        self.file_field = file_field
        self.result = Upload({})
        self._buffer = bytearray()
        self._file = bytearray()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._parts = 0
        self._files = 0
        self._skip = False

    def on_part_begin(self) -> None:
        self._buffer = bytearray()
        self._disposition = b""
        self._skip = False
        self._parts += 1
        if self._parts > self.MAX_PARTS:
            raise FormParserError("too many parts")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value[:4096]
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise FormParserError("a part without a name")
        self._name = name.decode("utf-8", "replace")[:64]
        self._is_file = b"filename" in options
        if self._is_file:
            self._files += 1
            self._skip = self._files > 1 or self._name != self.file_field
            if not self._skip:
                self.result.filename = options[b"filename"].decode("utf-8", "replace")[:255]

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._skip:
            return
        if self._is_file:
            if self.result.too_large:
                return
            if len(self._file) + (end - start) > self.limit:
                self.result.too_large = True
                self._file = bytearray()
                return
            self._file += data[start:end]
            return
        if len(self._buffer) + (end - start) > self.MAX_FIELD:
            raise FormParserError("field too large")
        self._buffer += data[start:end]

    def on_part_end(self) -> None:
        if self._skip:
            return
        if self._is_file:
            self.result.content = bytes(self._file)
        elif self._name not in self.result.fields:
            self.result.fields[self._name] = self._buffer.decode("utf-8", "replace")

    async def read(self, request: Request) -> Upload:
        ctype, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            self.result.malformed = True
            return self.result
        callbacks: MultipartCallbacks = {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }
        parser = MultipartParser(boundary, callbacks)
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                parser.write(chunk)
                if self.result.too_large and received > self.drain:
                    return self.result  # enough: stop reading
            parser.finalize()
        except FormParserError:
            self.result.malformed = True
        except PayloadTooLarge:  # the app's limit on any request body (api/middleware.py)
            self.result.too_large = True
        return self.result
