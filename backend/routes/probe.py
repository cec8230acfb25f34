"""Probe samples generated elsewhere: upload an .npz, .npy or .zip of PNGs, get their features.

The request body is read here, not by FastAPI's form handling, because Starlette spools
uploads larger than 1 MiB to a temporary file and reads any size. This route counts the bytes
as they arrive, stops at MAX_BODY_BYTES and keeps the file in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy.orm import Session, sessionmaker

from backend.deps import MAX_INTEGER
from backend.figures import finite_or_none
from backend.schemas import HistogramPublic
from backend.security.identity import CurrentUser
from backend.security.ownership import can_read
from biaslab.families import FAMILIES
from biaslab.families.probing import (
    ProbeOutcome,
    StudyDataset,
    probe_design,
    probe_images,
)
from biaslab.probes.samples import (
    DEFAULT_DOT_RADIUS,
    DOT_RADIUS_RANGE,
    MAX_UPLOAD_BYTES,
    InvalidSamples,
    SampleSet,
    SamplesTooLarge,
    UnsupportedSampleFile,
    load_samples,
)
from biaslab.store.db import session_scope
from biaslab.store.models import Study

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["probe"])

# Room for the multipart boundaries, part headers and the short form fields beside the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES
# family, study_id and dot_radius are a few characters long.
MAX_FIELD_BYTES = 1024
FORM_FIELDS = ("file", "family", "study_id", "dot_radius")


class ProbeForm(BaseModel):
    """The form fields beside the file."""

    # NaN and infinity would otherwise be reported as outside the dot_radius range.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    family: str | None = Field(
        default=None,
        description="The dataset family; the study's family with study_id, else dots.",
    )
    study_id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_INTEGER,
        description="A study whose design the samples are probed and scored against.",
    )
    dot_radius: float | None = Field(
        default=None,
        ge=DOT_RADIUS_RANGE[0],
        le=DOT_RADIUS_RANGE[1],
        description=(
            "Dot radius as a fraction of the image width, for dots without a study; "
            f"{DEFAULT_DOT_RADIUS} when unset."
        ),
    )

    @field_validator("family")
    @classmethod
    def _registered_family(cls, family: str | None) -> str | None:
        if family is not None and family not in FAMILIES:
            raise ValueError(f"use one of {', '.join(sorted(FAMILIES))}")
        return family


class SampleSourcePublic(BaseModel):
    format: Literal["npz", "npy", "png-zip"]
    array: str | None
    dtype: str
    layout: Literal["NHWC", "NCHW"]


class ProbePublic(BaseModel):
    family: str
    study_id: int | None
    # One object per input image, in input order: its index, its archive member's
    # "name" for a zip of PNGs, and every feature's value (for dots, "count"), null
    # where the probe could not read it.
    images: list[dict[str, Any]]
    histograms: dict[str, HistogramPublic]
    # The family's summary numbers, such as precision and recall; null where undefined.
    scores: dict[str, float | None]
    image_size: tuple[int, int]
    n_images: int
    source: SampleSourcePublic


def probe_public(samples: SampleSet, outcome: ProbeOutcome, study_id: int | None) -> ProbePublic:
    """Build the response of a probe; the CLI prints the same JSON."""
    return ProbePublic(
        family=outcome.family,
        study_id=study_id,
        images=[
            {"index": index, **_member_name(samples, index), **values}
            for index, values in enumerate(outcome.images)
        ],
        histograms={
            name: HistogramPublic(
                **histogram.model_dump(), unrecognized_share=histogram.unrecognized_share
            )
            for name, histogram in outcome.histograms.items()
        },
        scores={name: finite_or_none(value) for name, value in outcome.scores.items()},
        image_size=(int(samples.images.shape[1]), int(samples.images.shape[2])),
        n_images=int(samples.images.shape[0]),
        source=SampleSourcePublic(
            format=samples.file_format,
            array=samples.array_name,
            dtype=samples.stored_dtype,
            layout=samples.layout,
        ),
    )


def _member_name(samples: SampleSet, index: int) -> dict[str, str]:
    return {} if samples.names is None else {"name": samples.names[index]}


class StudyNotFound(LookupError):
    """A probe's study_id that names no study."""


def load_study_dataset(
    sessions: sessionmaker[Session],
    study_id: int,
    readable: Callable[[Study], bool] = lambda _study: True,
) -> StudyDataset:
    """Read a study's dataset design in a short transaction.

    Raises StudyNotFound when there is no such study, and also when `readable`
    rejects it, so that a private study's existence does not leak.
    """
    with session_scope(sessions) as session:
        study = session.get(Study, study_id)
        if study is None or not readable(study):
            raise StudyNotFound(f"study {study_id} not found")
        return StudyDataset(study_id=study.id, dataset=dict(study.design["dataset"]))


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
            detail="send the file as multipart/form-data with a file field",
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
                "required": ["file"],
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
                    "family": {
                        "type": "string",
                        "enum": sorted(FAMILIES),
                        "description": "The study's family with study_id, else dots.",
                    },
                    "study_id": {
                        "type": "integer",
                        "minimum": 1,
                        "description": (
                            "A study to probe and score against; required for families "
                            "that compare samples with a training set."
                        ),
                    },
                    "dot_radius": {
                        "type": "number",
                        "minimum": DOT_RADIUS_RANGE[0],
                        "maximum": DOT_RADIUS_RANGE[1],
                        "default": DEFAULT_DOT_RADIUS,
                        "description": "For dots without a study: radius over image width.",
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
        404: {"description": "study_id names no study."},
        413: {"description": "The body is larger than the upload limit."},
        415: {"description": "The file is not an .npz, .npy or .zip, or the body is no form."},
        422: {"description": "The file's content or a form field is invalid."},
    },
)
def probe(upload: ProbeUploadDep, request: Request, user: CurrentUser) -> ProbePublic:
    """Read every feature of uploaded samples: per image, as histograms, and as scores."""
    started = time.perf_counter()
    form = upload.form
    study = None
    if form.study_id is not None:
        try:
            study = load_study_dataset(
                request.app.state.sessions, form.study_id, lambda row: can_read(row, user)
            )
        except StudyNotFound as error:
            raise HTTPException(status_code=404, detail=f"study_id: {error}") from error
    try:
        design = probe_design(form.family, study, form.dot_radius)
        samples = load_samples(upload.data)
        outcome = probe_images(samples.images, design)
    except InvalidSamples as error:
        code = status.HTTP_422_UNPROCESSABLE_CONTENT
        if isinstance(error, SamplesTooLarge):
            code = status.HTTP_413_CONTENT_TOO_LARGE
        elif isinstance(error, UnsupportedSampleFile):
            code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
        logger.info("probe rejected an upload of %d bytes: %s", len(upload.data), error)
        raise HTTPException(status_code=code, detail=f"{error.field}: {error}") from error
    except ValueError as error:
        # A family's probe raises ValueError for images it cannot read at all.
        logger.info("probe could not read an upload of %d bytes: %s", len(upload.data), error)
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"file: {error}"
        ) from error
    logger.info(
        "probed %d images of %dx%d as %s in %.2f s",
        samples.images.shape[0],
        samples.images.shape[1],
        samples.images.shape[2],
        outcome.family,
        time.perf_counter() - started,
    )
    return probe_public(samples, outcome, form.study_id)
