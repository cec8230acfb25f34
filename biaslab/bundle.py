"""Study bundles: a zip with a study's design, results, analyses and figures, for another lab.

A bundle contains these members, each listed with its SHA-256 in `manifest.json`:

- `manifest.json`: the format and its version, when and from which study it was
  made, and the versions of the packages that made the results;
- `design.json`: the study design, a valid `POST /api/studies` body, so the
  study can be trained again;
- `results.json`: the study and every run with its complete spec, status,
  training histograms, snapshots (histograms, scores, losses) and metrics;
- `results.csv`: the same histograms in long form, one row per bin;
- `analysis.json`: the analyses of the newest snapshots;
- `figures/NAME.json`: Plotly figures, as JSON;
- `grids/run-I-step-S.png`: the sample grid of each run's newest snapshot.

`read_bundle` checks the archive before it reads a member (its size, entry
names and count, declared and actual uncompressed sizes), then each member's
digest and schema, and that the runs are exactly those the design expands to.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import platform
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.design import RunSpec, StudyCreate, design_points, expand_runs
from biaslab.probes.samples import InvalidSamples, _check_central_directory, _check_member_name
from biaslab.store.models import RunStatus

BUNDLE_FORMAT: Final = "biaslab-study-bundle"
BUNDLE_VERSION: Final = 1
MAX_BUNDLE_BYTES = 64 * 2**20
MAX_UNCOMPRESSED_BYTES = 256 * 2**20
# Deflate reaches about 1030:1 on runs of one byte, the stuff of zip bombs; histogram JSON
# compresses far less, because its counts vary.
MAX_COMPRESSION_RATIO = 500
MAX_FIGURES = 200
MAX_GRID_BYTES = 4 * 2**20
MAX_MEMBERS = 5 + MAX_FIGURES + 500
MAX_SNAPSHOTS_PER_RUN = 10_000
MAX_METRICS_PER_RUN = 200_000
# The packages whose versions a bundle records; the ones not installed are left out.
RECORDED_PACKAGES = ("biaslab", "torch", "numpy", "scipy", "pydantic", "plotly", "sqlalchemy")

MANIFEST = "manifest.json"
DESIGN = "design.json"
RESULTS = "results.json"
RESULTS_CSV = "results.csv"
ANALYSIS = "analysis.json"
_FIGURE_NAME = re.compile(r"^figures/[a-z0-9][a-z0-9_-]{0,80}\.json$")
_GRID_NAME = re.compile(r"^grids/run-(\d{1,6})-step-(\d{1,10})\.png$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ShortText = Annotated[str, Field(max_length=500)]
ModelT = TypeVar("ModelT", bound=BaseModel)


class InvalidBundle(ValueError):
    """A bundle that cannot be imported; the message names the member and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BundleHistogram(FeatureHistogram):
    """A stored histogram whose bins, labels and totals agree with each other."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _consistent(self) -> BundleHistogram:
        bins = len(self.counts)
        if bins == 0 or len(self.edges) != bins + 1:
            raise ValueError(f"{bins} counts need {bins + 1} edges, not {len(self.edges)}")
        if self.labels and len(self.labels) != bins:
            raise ValueError(f"{len(self.labels)} labels for {bins} bins; give one per bin")
        if min(self.counts) < 0 or self.unrecognized < 0:
            raise ValueError("counts must not be negative")
        if sum(self.counts) + self.unrecognized != self.total:
            raise ValueError(
                f"counts ({sum(self.counts)}) and unrecognized ({self.unrecognized}) "
                f"do not add up to total ({self.total})"
            )
        return self


Histograms = dict[Annotated[str, Field(max_length=64)], BundleHistogram]
Numbers = dict[Annotated[str, Field(max_length=64)], float | None]


class BundleSnapshot(_Strict):
    step: int = Field(ge=0)
    histograms: Histograms
    scores: Numbers = {}
    losses: Numbers = {}


class BundleMetric(_Strict):
    step: int = Field(ge=0)
    name: Annotated[str, Field(min_length=1, max_length=64)]
    # None for a value that was not finite, since JSON has no NaN.
    value: float | None


class BundleRun(_Strict):
    index: int = Field(ge=0)
    spec: dict[str, Any]
    status: RunStatus
    step: int = Field(ge=0)
    progress: float = Field(ge=0, le=1)
    error: Annotated[str, Field(max_length=20_000)] | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    device: Annotated[str, Field(max_length=64)] | None = None
    worker_host: Annotated[str, Field(max_length=255)] | None = None
    training_histograms: Histograms | None = None
    snapshots: list[BundleSnapshot] = Field(default=[], max_length=MAX_SNAPSHOTS_PER_RUN)
    metrics: list[BundleMetric] = Field(default=[], max_length=MAX_METRICS_PER_RUN)

    @model_validator(mode="after")
    def _distinct_steps(self) -> BundleRun:
        steps = [snapshot.step for snapshot in self.snapshots]
        if len(set(steps)) != len(steps):
            raise ValueError("snapshots repeat a step; a run has one snapshot per step")
        return self


class BundleStudy(_Strict):
    id: int = Field(ge=1)
    name: Annotated[str, Field(min_length=1, max_length=200)]
    created_at: datetime
    design: dict[str, Any]


class StudyExport(_Strict):
    """A study with all of its runs' results: `results.json`, and `GET .../export.json`."""

    format: Literal["biaslab-study-bundle"] = BUNDLE_FORMAT
    format_version: Literal[1] = BUNDLE_VERSION
    exported_at: datetime
    package_versions: dict[Annotated[str, Field(max_length=64)], ShortText]
    study: BundleStudy
    runs: list[BundleRun] = Field(max_length=10_000)


class Manifest(_Strict):
    format: Literal["biaslab-study-bundle"]
    format_version: Literal[1]
    exported_at: datetime
    study_id: int = Field(ge=1)
    study_name: Annotated[str, Field(max_length=200)]
    package_versions: dict[Annotated[str, Field(max_length=64)], ShortText]
    # Member name -> SHA-256 of its bytes, as hex; every other member is listed here.
    files: dict[
        Annotated[str, Field(max_length=200)], Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    ]


@dataclass(frozen=True)
class Bundle:
    """A bundle read and checked by `read_bundle`."""

    manifest: Manifest
    export: StudyExport
    design: StudyCreate
    # (run index, step) -> PNG bytes of that snapshot's sample grid.
    grids: dict[tuple[int, int], bytes] = field(default_factory=dict)


def package_versions() -> dict[str, str]:
    """Return the versions of Python and of the packages behind the results."""
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ---- Writing ----


def results_csv(export: StudyExport) -> str:
    """Write every histogram of the study in long form: one row per run, source, step and bin.

    Source is "training" (no step) or "generated". The last row of each histogram
    is the "unrecognized" bin. `share` is of all images, so a histogram's shares add to 1.
    """
    axes: list[str] = []
    labels = _run_labels(export)
    for run_labels in labels.values():
        axes.extend(axis for axis in run_labels if axis not in axes)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "run_index",
            "run_status",
            *(f"axis:{axis}" for axis in axes),
            "source",
            "step",
            "feature",
            "bin",
            "bin_low",
            "bin_high",
            "count",
            "share",
            "total",
        ]
    )
    for run in export.runs:
        prefix = [run.index, run.status.value, *(labels[run.index].get(axis, "") for axis in axes)]
        sources: list[tuple[str, int | None, Histograms]] = []
        if run.training_histograms:
            sources.append(("training", None, run.training_histograms))
        sources.extend(
            ("generated", snapshot.step, snapshot.histograms) for snapshot in run.snapshots
        )
        for source, step, histograms in sources:
            for name, histogram in histograms.items():
                for row in _bin_rows(histogram):
                    writer.writerow([*prefix, source, "" if step is None else step, name, *row])
    return buffer.getvalue()


def _bin_rows(histogram: FeatureHistogram) -> list[list[Any]]:
    """Return [bin, low, high, count, share, total] per bin, then the unrecognized row."""
    total = histogram.total or 1
    edges = histogram.edges
    names = histogram.labels or [
        f"{(low + high) / 2:g}" for low, high in zip(edges[:-1], edges[1:], strict=True)
    ]
    rows: list[list[Any]] = [
        [names[i], edges[i], edges[i + 1], count, f"{count / total:.10g}", histogram.total]
        for i, count in enumerate(histogram.counts)
    ]
    unrecognized = histogram.unrecognized
    rows.append(
        ["unrecognized", "", "", unrecognized, f"{unrecognized / total:.10g}", histogram.total]
    )
    return rows


def _run_labels(export: StudyExport) -> dict[int, dict[str, str]]:
    """Return each run's sweep labels from the design; none when the design does not validate."""
    try:
        points = design_points(export.study.design)
    except ValidationError:
        points = []
    by_index = {point.index: point.labels for point in points}
    return {run.index: by_index.get(run.index, {}) for run in export.runs}


def write_bundle(
    export: StudyExport,
    analysis: Mapping[str, Any],
    figures: Mapping[str, Mapping[str, Any]],
    grids: Mapping[tuple[int, int], bytes],
) -> bytes:
    """Return the zip bytes of a bundle; `figures` maps a member-safe name to a Plotly figure."""
    members: dict[str, bytes] = {
        DESIGN: _json_bytes(export.study.design),
        RESULTS: export.model_dump_json(indent=1).encode(),
        RESULTS_CSV: results_csv(export).encode(),
        ANALYSIS: _json_bytes(analysis),
    }
    for name, figure in figures.items():
        member = f"figures/{name}.json"
        if not _FIGURE_NAME.fullmatch(member):
            raise ValueError(f"figure name {name!r} is invalid; use a-z, 0-9, - and _")
        members[member] = _json_bytes(figure)
    for (index, step), png in grids.items():
        members[f"grids/run-{index}-step-{step}.png"] = png
    manifest = Manifest(
        format=BUNDLE_FORMAT,
        format_version=BUNDLE_VERSION,
        exported_at=export.exported_at,
        study_id=export.study.id,
        study_name=export.study.name,
        package_versions=export.package_versions,
        files={name: hashlib.sha256(data).hexdigest() for name, data in members.items()},
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, manifest.model_dump_json(indent=1))
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _json_bytes(value: Any) -> bytes:
    # allow_nan=False: a NaN here would make a file that strict JSON readers reject.
    return json.dumps(value, indent=1, allow_nan=False).encode()


# ---- Reading ----


def read_bundle(data: bytes) -> Bundle:
    """Check and read a bundle's bytes; raise InvalidBundle naming the member and the problem."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise InvalidBundle(
            f"the bundle has {len(data):,} bytes, above the limit of {MAX_BUNDLE_BYTES:,} bytes"
        )
    if not data.startswith(b"PK\x03\x04"):
        raise InvalidBundle("the file is not a zip archive; export a bundle with `biaslab export`")
    try:
        _check_central_directory(data)
        archive = zipfile.ZipFile(io.BytesIO(data))
    except InvalidSamples as error:
        raise InvalidBundle(str(error)) from error
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as error:
        raise InvalidBundle(f"the file is not a valid zip archive: {error}") from error
    with archive:
        members = _read_members(archive)

    manifest = _parse(Manifest, members, MANIFEST)
    _check_digests(manifest, members)
    export = _parse(StudyExport, members, RESULTS)
    design = _check_design(members, export)
    grids = _check_grids(members, export)
    return Bundle(manifest=manifest, export=export, design=design, grids=grids)


def _read_members(archive: zipfile.ZipFile) -> dict[str, bytes]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InvalidBundle(
            f"the bundle has {len(infos):,} entries, above the limit of {MAX_MEMBERS:,}"
        )
    declared = 0
    for info in infos:
        try:
            _check_member_name(info.filename)
        except InvalidSamples as error:
            raise InvalidBundle(str(error)) from error
        if info.is_dir() or not _known_member(info.filename):
            raise InvalidBundle(
                f"member {info.filename!r} is not allowed in a bundle; a bundle contains "
                f"{MANIFEST}, {DESIGN}, {RESULTS}, {RESULTS_CSV}, {ANALYSIS}, figures/*.json "
                "and grids/run-I-step-S.png"
            )
        if info.flag_bits & 0x1:
            raise InvalidBundle(f"member {info.filename!r} is encrypted")
        if info.file_size / max(info.compress_size, 1) > MAX_COMPRESSION_RATIO:
            raise InvalidBundle(
                f"member {info.filename!r} declares a compression ratio above "
                f"{MAX_COMPRESSION_RATIO}"
            )
        declared += info.file_size
        if declared > MAX_UNCOMPRESSED_BYTES:
            raise InvalidBundle(
                f"the bundle declares more than {MAX_UNCOMPRESSED_BYTES:,} bytes uncompressed"
            )
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise InvalidBundle("the bundle repeats a member name")
    if sum(1 for name in names if name.startswith("figures/")) > MAX_FIGURES:
        raise InvalidBundle(f"the bundle has more than {MAX_FIGURES} figures")
    members: dict[str, bytes] = {}
    for info in infos:
        members[info.filename] = _read_member(archive, info)
    return members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Read a member, counting the bytes that actually come out against its declared size."""
    pieces: list[bytes] = []
    received = 0
    try:
        with archive.open(info) as stream:
            while piece := stream.read(2**20):
                received += len(piece)
                if received > info.file_size:
                    raise InvalidBundle(
                        f"member {info.filename!r} decompresses to more than its declared "
                        f"{info.file_size:,} bytes"
                    )
                pieces.append(piece)
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as error:
        raise InvalidBundle(f"member {info.filename!r} is corrupt: {error}") from error
    return b"".join(pieces)


def _known_member(name: str) -> bool:
    fixed = (MANIFEST, DESIGN, RESULTS, RESULTS_CSV, ANALYSIS)
    return name in fixed or bool(_FIGURE_NAME.fullmatch(name) or _GRID_NAME.fullmatch(name))


def _parse(model: type[ModelT], members: Mapping[str, bytes], name: str) -> ModelT:
    data = members.get(name)
    if data is None:
        raise InvalidBundle(f"the bundle has no {name}; export it again with `biaslab export`")
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        raise InvalidBundle(f"{name}: {_first_error(error)}") from error


def _first_error(error: ValidationError) -> str:
    problems = error.errors()
    first = problems[0]
    location = ".".join(str(part) for part in first.get("loc", ())) or "the file"
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"{location}: {first.get('msg', 'invalid')}{more}"


def _check_digests(manifest: Manifest, members: Mapping[str, bytes]) -> None:
    listed = set(manifest.files)
    present = set(members) - {MANIFEST}
    if listed != present:
        missing = sorted(listed - present)
        extra = sorted(present - listed)
        raise InvalidBundle(
            f"{MANIFEST} does not match the members: missing {missing or 'none'}, "
            f"not listed {extra or 'none'}"
        )
    for name, digest in manifest.files.items():
        if hashlib.sha256(members[name]).hexdigest() != digest:
            raise InvalidBundle(f"member {name!r} does not match its SHA-256 in {MANIFEST}")


def _check_design(members: Mapping[str, bytes], export: StudyExport) -> StudyCreate:
    """Validate the design and check that the runs are exactly the runs it expands to."""
    design = _parse(StudyCreate, members, DESIGN)
    if json.loads(members[DESIGN]) != export.study.design:
        raise InvalidBundle(f"{DESIGN} differs from the design in {RESULTS}")
    expanded = {run.index: run.spec.model_dump(mode="json") for run in expand_runs(design)}
    indices = [run.index for run in export.runs]
    if sorted(indices) != sorted(expanded) or len(set(indices)) != len(indices):
        raise InvalidBundle(
            f"{RESULTS} has runs {sorted(indices)}, but the design makes runs {sorted(expanded)}"
        )
    for position, run in enumerate(export.runs):
        try:
            spec = RunSpec.model_validate(run.spec).model_dump(mode="json")
        except ValidationError as error:
            raise InvalidBundle(f"{RESULTS}: runs.{position}.spec.{_first_error(error)}") from error
        if spec != expanded[run.index]:
            raise InvalidBundle(
                f"{RESULTS}: runs.{position}.spec differs from run {run.index} of the design; "
                "each run's spec must be the design's expansion"
            )
    return design


def _check_grids(members: Mapping[str, bytes], export: StudyExport) -> dict[tuple[int, int], bytes]:
    steps = {(run.index, snapshot.step) for run in export.runs for snapshot in run.snapshots}
    grids: dict[tuple[int, int], bytes] = {}
    for name, data in members.items():
        match = _GRID_NAME.fullmatch(name)
        if match is None:
            continue
        key = (int(match.group(1)), int(match.group(2)))
        if key not in steps:
            raise InvalidBundle(f"member {name!r} is the grid of a snapshot that {RESULTS} lacks")
        if len(data) > MAX_GRID_BYTES or not data.startswith(_PNG_SIGNATURE):
            raise InvalidBundle(f"member {name!r} is not a PNG of at most {MAX_GRID_BYTES:,} bytes")
        grids[key] = data
    return grids
