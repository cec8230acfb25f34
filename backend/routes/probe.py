"""Probe samples generated elsewhere: upload an .npz, .npy or .zip of PNGs, get dot counts.

The request body is read here, not by FastAPI's form handling, because Starlette spools
uploads larger than 1 MiB to a temporary file and reads any size. This route counts the bytes
as they arrive, stops at MAX_BODY_BYTES and keeps the file in memory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from backend.schemas import HistogramPublic
from biaslab.probes.samples import (
    DEFAULT_DOT_RADIUS,
    DOT_RADIUS_RANGE,
    MAX_UPLOAD_BYTES,
    InvalidSamples,
    ProbeResult,
    SampleSet,
    SamplesTooLarge,
    UnsupportedSampleFile,
    load_samples,
    probe_dots,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["probe"])

# Room for the multipart boundaries, part headers and the short form fields beside the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES
# family and dot_radius are a few characters long.
MAX_FIELD_BYTES = 1024
FORM_FIELDS = ("file", "family", "dot_radius")


class ProbeForm(BaseModel):
    """The form fields beside the file."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["dots"]
    dot_radius: float = Field(
        default=DEFAULT_DOT_RADIUS,
        ge=DOT_RADIUS_RANGE[0],
        le=DOT_RADIUS_RANGE[1],
        description="Dot radius as a fraction of the image width.",
    )


class ImageCountPublic(BaseModel):
    index: int
    count: int | None


class SampleSourcePublic(BaseModel):
    format: Literal["npz", "npy", "png-zip"]
    array: str | None
    dtype: str
    layout: Literal["NHWC", "NCHW"]


class ProbePublic(BaseModel):
    family: Literal["dots"]
    images: list[ImageCountPublic]
    histograms: dict[str, HistogramPublic]
    image_size: tuple[int, int]
    n_images: int
    source: SampleSourcePublic


def probe_public(samples: SampleSet, result: ProbeResult) -> ProbePublic:
    """Build the response of a dots probe; the CLI prints the same JSON."""
    histogram = result.histogram
    return ProbePublic(
        family="dots",
        images=[ImageCountPublic(index=i, count=count) for i, count in enumerate(result.counts)],
        histograms={
            "count": HistogramPublic(
                **histogram.model_dump(), unrecognized_share=histogram.unrecognized_share
            )
        },
        image_size=result.image_size,
        n_images=len(result.counts),
        source=SampleSourcePublic(
            format=samples.file_format,
            array=samples.array_name,
            dtype=samples.stored_dtype,
            layout=samples.layout,
        ),
    )


@dataclass
class _Part:
    name: str | None = None
    is_file: bool = False
    data: bytearray | None = None


class _FormCollector:
    """Collect the parts of a multipart/form-data body in memory."""

    def __init__(self, boundary: bytes) -> None:
        self.parts: list[_Part] = []
        self.finished = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_end": self._on_end,
            },
        )

    def write(self, chunk: bytes) -> None:
        self._parser.write(chunk)

    def _on_part_begin(self) -> None:
        self.parts.append(_Part(data=bytearray()))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        assert part.data is not None
        part.data += data[start:end]
        if not part.is_file and len(part.data) > MAX_FIELD_BYTES:
            raise HTTPException(
                status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"{part.name}: longer than {MAX_FIELD_BYTES} bytes",
            )

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            _, options = parse_options_header(bytes(self._header_value))
            name = options.get(b"name")
            self.parts[-1].name = name.decode("utf-8", "replace") if name is not None else None
            self.parts[-1].is_file = b"filename" in options
        self._header_name.clear()
        self._header_value.clear()

    def _on_end(self) -> None:
        self.finished = True


@dataclass(frozen=True)
class ProbeUpload:
    form: ProbeForm
    data: bytes


def _too_large() -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_413_CONTENT_TOO_LARGE,
        detail=(
            f"file: the request body is larger than {MAX_BODY_BYTES:,} bytes; files may have "
            f"at most {MAX_UPLOAD_BYTES:,} bytes ({MAX_UPLOAD_BYTES // 2**20} MiB)"
        ),
    )


async def read_probe_upload(request: Request) -> ProbeUpload:
    """Read the multipart body with a byte limit and validate its fields."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise HTTPException(
            status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail="send the file as multipart/form-data with the fields file and family",
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()

    # Count the bytes that arrive too, because a client can send more than it declares.
    collector = _FormCollector(boundary)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > MAX_BODY_BYTES:
                raise _too_large()
            collector.write(chunk)
    except MultipartParseError as error:
        raise HTTPException(
            status_code=status.HTTP_400_BAD_REQUEST, detail=f"invalid multipart body: {error}"
        ) from error
    if not collector.finished:
        raise HTTPException(
            status_code=status.HTTP_400_BAD_REQUEST,
            detail="invalid multipart body: it ends before the closing boundary",
        )
    return _upload_from_parts(collector.parts)


def _upload_from_parts(parts: list[_Part]) -> ProbeUpload:
    fields: dict[str, Any] = {}
    for part in parts:
        if part.name in fields:
            raise HTTPException(
                status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"{part.name}: sent more than once; send each form field once",
            )
        fields[part.name or ""] = part.data
    data = fields.pop("file", None)
    form_values = {name: bytes(value).decode("utf-8", "replace") for name, value in fields.items()}
    errors: list[dict[str, Any]] = []
    if data is None:
        errors.append({"type": "missing", "loc": ("body", "file"), "msg": "Field required"})
    try:
        form = ProbeForm.model_validate(form_values)
    except ValidationError as error:
        errors += [{**item, "loc": ("body", *item["loc"])} for item in error.errors()]
    if errors:
        # The app's handler words these like every other validation error.
        raise RequestValidationError(errors)
    return ProbeUpload(form=form, data=bytes(data))


ProbeUploadDep = Annotated[ProbeUpload, Depends(read_probe_upload)]

_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "family"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": (
                            "An .npz or .npy of (N, H, W, 3) or (N, 3, H, W) images, uint8 or "
                            f"float in [0, 1], or a .zip of PNGs; at most {MAX_UPLOAD_BYTES:,} "
                            "bytes."
                        ),
                    },
                    "family": {"type": "string", "enum": ["dots"]},
                    "dot_radius": {
                        "type": "number",
                        "minimum": DOT_RADIUS_RANGE[0],
                        "maximum": DOT_RADIUS_RANGE[1],
                        "default": DEFAULT_DOT_RADIUS,
                    },
                },
            }
        }
    },
}


@router.post(
    "/probe",
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses={
        413: {"description": "The body is larger than the upload limit."},
        415: {"description": "The file is not an .npz, .npy or .zip, or the body is no form."},
        422: {"description": "The file's content or a form field is invalid."},
    },
)
def probe(upload: ProbeUploadDep) -> ProbePublic:
    """Count the dots in uploaded samples; histogram the counts with the unrecognized share."""
    started = time.perf_counter()
    try:
        samples = load_samples(upload.data)
        result = probe_dots(samples.images, upload.form.dot_radius)
    except InvalidSamples as error:
        code = status.HTTP_422_UNPROCESSABLE_CONTENT
        if isinstance(error, SamplesTooLarge):
            code = status.HTTP_413_CONTENT_TOO_LARGE
        elif isinstance(error, UnsupportedSampleFile):
            code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
        logger.info("probe rejected an upload of %d bytes: %s", len(upload.data), error)
        raise HTTPException(status_code=code, detail=f"{error.field}: {error}") from error
    logger.info(
        "probed %d images of %dx%d in %.2f s",
        len(result.counts),
        *result.image_size,
        time.perf_counter() - started,
    )
    return probe_public(samples, result)
