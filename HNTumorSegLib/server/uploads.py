"""A job's uploaded files: a multipart body streamed to disk under a size limit, then placed.

Why streamed by hand (python-multipart's push parser) rather than through Starlette's
``request.form()``: the form parser spools every file to the system temp folder first and knows no
total limit; here each part goes straight into the job's private folder (mode 0700) and the upload
stops at ``--max-upload-mb`` (:class:`TooLarge`, HTTP 413) with the partial files removed by the
caller, so an oversized or endless upload never fills the disk.

Placing (:func:`place`): a part's bytes are told apart by content, not by the name the client
gave (that name is never used for a path and never logged): a zip (one DICOM series, or an
RTSTRUCT/SEG with it) is unpacked with the model importer's rules
(:func:`HNTumorSegLib.models.download.safe_unzip`: no traversal, no links, no zip bombs); gzip is
``.nii.gz``; a DICOM preamble is ``.dcm``; else ``.nii``, or the NRRD / MetaImage suffix the
client named.

Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> raw = folder / "part-0"
    >>> _ = raw.write_bytes(b"\\x1f\\x8b" + bytes(10))
    >>> place(raw, folder / "T2", "t2.nii.gz", "input.T2").name
    'T2.nii.gz'
    >>> part_kind("input.T2"), part_kind("request"), part_kind("input.XX")
    ('file', 'field', None)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, BinaryIO

from ..errors import InputError
from ..vocab import InputRole, UploadPart

#: Form fields (JSON text) a job's multipart body may hold, and their size limit.
FIELD_PARTS = (UploadPart.REQUEST, UploadPart.REFINE)
MAX_FIELD_BYTES = 1 << 20
#: File parts besides ``input.<role>``.
FILE_PARTS = (UploadPart.PRIOR, UploadPart.PRIOR_IMAGE, UploadPart.BASE_LABELS)
#: Suffixes of image files kept as the client named them (everything else is told apart by content).
KEPT_SUFFIXES = (".nrrd", ".mha", ".nii")


class TooLarge(Exception):
    """The upload passed ``--max-upload-mb`` (HTTP 413)."""


def part_kind(name: str) -> str | None:
    """``"field"``, ``"file"`` or None (a part this API does not take)."""
    if name in FIELD_PARTS:
        return "field"
    if name in FILE_PARTS:
        return "file"
    if name.startswith("input.") and InputRole.lookup(name[len("input."):]) is not None:
        return "file"
    return None


@dataclass
class Upload:
    """What a multipart body held: form fields (text) and file parts (raw path, client's file name)."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[Path, str]] = field(default_factory=dict)
    size: int = 0


class _Collector:
    """python-multipart callbacks writing each part where it belongs."""

    def __init__(self, folder: Path, upload: Upload):
        self.folder = folder
        self.upload = upload
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.filename = ""
        self.out: BinaryIO | None = None
        self.text: bytearray | None = None
        self.n = 0
        self.error: InputError | None = None

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self.part_begin, "on_part_data": self.part_data, "on_part_end": self.part_end,
                "on_header_field": self.header_f, "on_header_value": self.header_v, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_done}

    def part_begin(self) -> None:
        self.headers = {}

    def header_f(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def header_v(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = self.header_value = b""

    def headers_done(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        self.filename = options.get(b"filename", b"").decode("utf-8", "replace")
        kind = part_kind(self.name)
        if kind is None or self.name in self.upload.fields or self.name in self.upload.files:
            why = "is given twice" if kind else "is not a part this server takes"
            self.error = self.error or InputError(
                f"upload part {self.name[:40]!r} {why}", None,
                "send a 'request' field and input.T2 / input.CT / input.PET (optional prior, prior_image) files once each")
            self.out, self.text = None, None
            return
        if kind == "field":
            self.text = bytearray()
            return
        raw = self.folder / f"part-{self.n}"
        self.n += 1
        fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.out = os.fdopen(fd, "wb")
        self.upload.files[self.name] = (raw, self.filename)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.out is not None:
            self.out.write(data[start:end])
        elif self.text is not None:
            self.text += data[start:end]
            if len(self.text) > MAX_FIELD_BYTES:
                self.error = self.error or InputError(f"form field {self.name!r} is over 1 MiB", None,
                                                      "send the request's JSON only (images as file parts)")
                self.text = None

    def part_end(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
        if self.text is not None:
            self.upload.fields[self.name] = self.text.decode("utf-8", "replace")
            self.text = None

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None


async def receive(headers: Any, stream: AsyncIterator[bytes], folder: Path, limit_bytes: int) -> Upload:
    """Stream a ``multipart/form-data`` body into ``folder``; :class:`TooLarge` past ``limit_bytes``
    (the declared Content-Length is checked first), InputError for a body this API does not take."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise TooLarge(int(declared))
    ctype, options = parse_options_header(headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if ctype == b"application/x-www-form-urlencoded":   # fields only (a refinement without base_labels)
        return await _receive_form(stream, limit_bytes)
    if ctype != b"multipart/form-data" or not boundary:
        raise InputError("the body is not multipart/form-data", None,
                         "send the request as a 'request' form field and the images as file parts")
    upload = Upload()
    collector = _Collector(folder, upload)
    callbacks: Any = collector.callbacks()   # python-multipart's TypedDict of the same keys
    parser = MultipartParser(boundary, callbacks)
    try:
        async for chunk in stream:
            upload.size += len(chunk)
            if upload.size > limit_bytes:
                raise TooLarge(upload.size)
            parser.write(chunk)
            if collector.error is not None:
                raise collector.error
        parser.finalize()
    except (ValueError, TypeError) as exc:   # python-multipart's parse errors
        if isinstance(exc, InputError):
            raise
        raise InputError("the multipart body is malformed", None, "send a standard multipart/form-data body") from None
    finally:
        collector.close()
    return upload


async def _receive_form(stream: AsyncIterator[bytes], limit_bytes: int) -> Upload:
    """An urlencoded body's fields (what httpx sends for ``data=`` without files)."""
    from urllib.parse import parse_qs

    upload = Upload()
    body = bytearray()
    async for chunk in stream:
        upload.size += len(chunk)
        if upload.size > min(limit_bytes, MAX_FIELD_BYTES * len(FIELD_PARTS)):
            raise TooLarge(upload.size)
        body += chunk
    for name, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
        if part_kind(name) != "field" or len(values) != 1:
            raise InputError(f"form field {name[:40]!r} is not taken (or given twice)", None,
                             "send the 'request' (or 'refine') field once; images as multipart file parts")
        upload.fields[name] = values[0]
    return upload


def place(raw: Path, target_stem: Path, client_name: str, part: str) -> Path:
    """Move an uploaded part to ``target_stem`` + its suffix (told apart by content, see the module
    docstring); a zip becomes the folder ``target_stem`` it is unpacked into. Returns the path."""
    from ..errors import ModelError
    from ..models.download import safe_unzip

    with open(raw, "rb") as f:
        head = f.read(132)
    if head[:4] == b"PK\x03\x04":
        try:
            safe_unzip(raw, target_stem)
        except ModelError as exc:
            raise InputError(f"upload {part}: {exc.problem}", None,
                             "send a plain zip of one DICOM series (no links, no folders outside it)") from None
        raw.unlink()
        if not any(p.is_file() for p in target_stem.rglob("*")):
            raise InputError(f"upload {part}: the zip holds no file", None, "zip the DICOM series' files")
        return target_stem
    if head[:2] == b"\x1f\x8b":
        suffix = ".nii.gz"
    elif head[128:132] == b"DICM":
        suffix = ".dcm"
    else:
        given = Path(client_name.replace("\\", "/")).suffix.lower()
        suffix = given if given in KEPT_SUFFIXES else ".nii"
    out = target_stem.with_name(target_stem.name + suffix)
    os.replace(raw, out)
    return out
