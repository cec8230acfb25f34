"""Sweep axes: the values a study varies, and the runs they make.

An axis names a field of the run spec by its dotted path ("dataset.counts",
"model.architecture", "training.learning_rate", "training.seed") and lists the
values that the field takes. An axis without a path sets several fields at once:
each of its values is an object that maps field paths to values, such as a model
together with the training recipe that suits it.

A sweep makes one run per combination of axis values, in the order of
`itertools.product`: the first axis varies slowest and the last fastest. Each
axis's value replaces the field at its path in the study's run spec, axis by
axis in the listed order, so an axis may refine a field that an earlier axis
set ("model", then "model.z_dim") but never replace one.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    BaseModel,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from biaslab.design.base import Strict, error_location
from biaslab.design.datasets import DATASET_FAMILIES
from biaslab.design.models import MODEL_KINDS

# A study that makes more runs than this is rejected when it is submitted.
MAX_RUNS_PER_STUDY = 500
MAX_AXES = 8
MAX_LABEL_CHARS = 100
# An invalid sweep's error names at most this many of the axis values that cause it.
MAX_REPORTED_FAILURES = 3
# A label made from a value's JSON text is cut to this length.
DEFAULT_LABEL_CHARS = 60

FieldPath = Annotated[
    str,
    StringConstraints(pattern=r"^(dataset|model|training)(\.[a-z_][a-z0-9_]*)*$", max_length=200),
]
AxisName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    # Control characters have no place in a name shown in charts and tables.
    Field(pattern=r"^[^\x00-\x1f\x7f]+$"),
]
AxisLabel = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_LABEL_CHARS),
    Field(pattern=r"^[^\x00-\x1f\x7f]+$"),
]
_FIELD_PATH = re.compile(r"^(dataset|model|training)(\.[a-z_][a-z0-9_]*)*$")

RunT = TypeVar("RunT", bound=BaseModel)


class SweepAxis(Strict):
    """One sweep axis: the runs take each of `values` in turn at `path`."""

    name: AxisName | None = Field(
        default=None,
        description="The axis as charts and tables show it; the path when unset.",
    )
    path: FieldPath | None = Field(
        default=None,
        description=(
            "Dotted path of the field that the values replace, such as dataset.counts, "
            "model.architecture or training.seed. Without a path, each value is an object "
            "that maps field paths to values, and the axis needs a name."
        ),
    )
    values: list[JsonValue] = Field(
        min_length=1,
        max_length=MAX_RUNS_PER_STUDY,
        description="The values the field takes, one or more runs each.",
    )
    labels: list[AxisLabel] | None = Field(
        default=None,
        description="A short label per value for charts and tables; the value's JSON when unset.",
    )

    @field_validator("values")
    @classmethod
    def _values_distinct(cls, values: list[JsonValue]) -> list[JsonValue]:
        seen: dict[str, int] = {}
        for index, value in enumerate(values):
            key = _canonical(value)
            if key in seen:
                raise ValueError(
                    f"values[{index}] {_short_json(value)} repeats values[{seen[key]}]; "
                    "list each value once"
                )
            seen[key] = index
        return values

    @model_validator(mode="after")
    def _path_or_settings(self) -> SweepAxis:
        if self.path is None:
            if self.name is None:
                raise ValueError("an axis without a path needs a name; set name or path")
            for index, value in enumerate(self.values):
                _check_settings(index, value)
        if self.labels is not None:
            if len(self.labels) != len(self.values):
                raise ValueError(
                    f"labels has {len(self.labels)} entries but values has {len(self.values)}; "
                    "give one label per value"
                )
            if len(set(self.labels)) != len(self.labels):
                raise ValueError(f"labels {self.labels} repeat a label; label each value apart")
        return self

    @property
    def title(self) -> str:
        """The axis's name, or its path when it has no name."""
        # The validator ensures that an axis has a name or a path.
        return self.name or self.path or ""

    def settings(self, position: int) -> dict[str, JsonValue]:
        """Return the fields that value `position` sets, by dotted path."""
        value = self.values[position]
        if self.path is not None:
            return {self.path: value}
        assert isinstance(value, dict)
        return dict(value)

    def set_paths(self) -> list[str]:
        """Return every field path that some value of this axis sets."""
        if self.path is not None:
            return [self.path]
        paths: dict[str, None] = {}
        for position in range(len(self.values)):
            paths.update(dict.fromkeys(self.settings(position)))
        return list(paths)

    def label(self, position: int) -> str:
        """Return the label of value `position`."""
        if self.labels is not None:
            return self.labels[position]
        value = self.values[position]
        if isinstance(value, str):
            return value
        return _short_json(value, DEFAULT_LABEL_CHARS)


def check_axes(axes: list[SweepAxis]) -> list[SweepAxis]:
    """Raise ValueError when axis names repeat or an axis replaces a field an earlier one sets."""
    names: dict[str, int] = {}
    for index, axis in enumerate(axes):
        if axis.title in names:
            raise ValueError(
                f"sweep[{index}] has the name {axis.title!r} of sweep[{names[axis.title]}]; "
                "give each axis its own name"
            )
        names[axis.title] = index
    for later_index, later in enumerate(axes):
        for earlier_index in range(later_index):
            for later_path in later.set_paths():
                for earlier_path in axes[earlier_index].set_paths():
                    if _is_within(later_path, earlier_path):
                        raise ValueError(
                            f"sweep[{later_index}] sets {later_path}, which replaces "
                            f"{earlier_path} set by sweep[{earlier_index}]; list the axis of "
                            "the whole field before the axis of the part"
                        )
    return axes


@dataclass(frozen=True)
class SweepPoint:
    """The axis values of one run: what a view groups by and labels the run with."""

    index: int
    # Axis title -> the value this run takes, and its label.
    values: dict[str, JsonValue]
    labels: dict[str, str]
    # Dotted field path -> value, in the order the axes apply them.
    settings: dict[str, JsonValue]
    # Axis title -> the fields that axis sets in this run.
    axis_paths: dict[str, list[str]]


@dataclass(frozen=True)
class ExpandedRun(Generic[RunT]):
    """One run of a study: its number, its complete spec and its axis values."""

    index: int
    spec: RunT
    values: dict[str, JsonValue]
    labels: dict[str, str]


def count_runs(axes: Sequence[SweepAxis]) -> int:
    """Return how many runs the axes make: the product of their value counts, 1 without axes."""
    return math.prod(len(axis.values) for axis in axes)


def run_count(study: BaseModel | Mapping[str, Any]) -> int:
    """Return how many runs a study makes, without building or validating them.

    `study` is a validated study design, or the JSON object of one (for example a
    designer's draft, which may be over the cap). Only its `sweep` is read.
    Raises pydantic.ValidationError when the sweep itself is malformed.
    """
    if isinstance(study, Mapping):
        axes = _AXES.validate_python(study.get("sweep") or [])
    else:
        axes = getattr(study, "sweep", [])
    return count_runs(axes)


def sweep_points(axes: Sequence[SweepAxis]) -> list[SweepPoint]:
    """Return the axis values of every run in run order; builds no run specs."""
    points: list[SweepPoint] = []
    positions = itertools.product(*(range(len(axis.values)) for axis in axes))
    for index, chosen in enumerate(positions):
        settings: dict[str, JsonValue] = {}
        axis_paths: dict[str, list[str]] = {}
        for axis, position in zip(axes, chosen, strict=True):
            axis_settings = axis.settings(position)
            settings.update(axis_settings)
            axis_paths[axis.title] = list(axis_settings)
        points.append(
            SweepPoint(
                index=index,
                values={
                    axis.title: axis.values[position]
                    for axis, position in zip(axes, chosen, strict=True)
                },
                labels={
                    axis.title: axis.label(position)
                    for axis, position in zip(axes, chosen, strict=True)
                },
                settings=settings,
                axis_paths=axis_paths,
            )
        )
    return points


def design_points(design: Mapping[str, Any]) -> list[SweepPoint]:
    """Return the axis values of every run of a stored study design, without validating runs.

    A design stored before studies had sweeps makes one run with no axis values.
    """
    axes = _AXES.validate_python(design.get("sweep") or [])
    return sweep_points(axes)


def expand_sweep(
    base: RunT, axes: Sequence[SweepAxis], validate: Callable[[Any], RunT]
) -> list[ExpandedRun[RunT]]:
    """Apply each run's axis values to `base` and validate the result with `validate`.

    Raises ValueError naming the axes, their values and the reason when a run is
    invalid, and when the axes make more than MAX_RUNS_PER_STUDY runs.
    """
    total = count_runs(axes)
    if total > MAX_RUNS_PER_STUDY:
        sizes = " x ".join(f"{len(axis.values)} {axis.title}" for axis in axes)
        raise ValueError(
            f"the sweep makes {total} runs ({sizes}), more than the {MAX_RUNS_PER_STUDY} "
            "runs a study may have; remove axis values or axes"
        )
    if not axes:
        return [ExpandedRun(index=0, spec=base, values={}, labels={})]

    base_json = base.model_dump(mode="json")
    runs: list[ExpandedRun[RunT]] = []
    # The first failure of each set of blamed axis values, so that one bad value is reported
    # once however many runs it makes invalid.
    failures: dict[str, str] = {}
    invalid = 0
    for point in sweep_points(axes):
        run_json = copy.deepcopy(base_json)
        for path, value in point.settings.items():
            _set_path(run_json, path, copy.deepcopy(value))
        try:
            spec = validate(run_json)
        except ValidationError as error:
            invalid += 1
            blamed, message = _describe_failure(point, error)
            failures.setdefault(blamed, message)
            continue
        runs.append(
            ExpandedRun(index=point.index, spec=spec, values=point.values, labels=point.labels)
        )
    if failures:
        shown = list(failures.values())[:MAX_REPORTED_FAILURES]
        raise ValueError("; ".join(shown) + f" ({invalid} of {total} runs are invalid)")
    return runs


def varying_fields(specs: Sequence[BaseModel | Mapping[str, Any]]) -> list[str]:
    """Return the dotted paths whose values differ between the runs, sorted.

    Lists are compared whole, so "dataset.counts" differs when any count does. A
    field present in some specs and absent from others differs.
    """
    flattened = [
        _flatten(spec.model_dump(mode="json") if isinstance(spec, BaseModel) else dict(spec))
        for spec in specs
    ]
    paths = sorted({path for leaves in flattened for path in leaves})
    missing = object()
    varying: list[str] = []
    for path in paths:
        values = {_canonical(leaves.get(path, missing)) for leaves in flattened}
        if len(values) > 1:
            varying.append(path)
    return varying


_AXES: TypeAdapter[list[SweepAxis]] = TypeAdapter(list[SweepAxis])


def _check_settings(index: int, value: JsonValue) -> None:
    """Raise ValueError unless `value` maps valid, non-nested field paths to values."""
    if not isinstance(value, dict) or not value:
        raise ValueError(
            f"values[{index}] is {_short_json(value)}; an axis without a path takes objects "
            'that map field paths to values, such as {"model.z_dim": 16}'
        )
    paths = list(value)
    for path in paths:
        if not _FIELD_PATH.fullmatch(path):
            raise ValueError(
                f"values[{index}] sets {path!r}, which is not a field path; write a dotted "
                "path that starts with dataset, model or training, such as training.steps"
            )
    for first, second in itertools.permutations(paths, 2):
        if _is_within(first, second):
            raise ValueError(
                f"values[{index}] sets both {first} and {second}, which is part of it; "
                "put the part inside the value of the whole field"
            )


def _is_within(outer: str, inner: str) -> bool:
    """Return whether the field at `inner` is the field at `outer` or a part of it."""
    return inner == outer or inner.startswith(outer + ".")


def _set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    """Set the field at dotted `path` in a JSON object, making missing objects on the way."""
    parts = path.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _describe_failure(point: SweepPoint, error: ValidationError) -> tuple[str, str]:
    """Return the axis values blamed for an invalid run, and a line naming them and the reason.

    The blamed axes are those that set the field in error or a field that contains it.
    When there are none, they are the axes that set a field of the same part (dataset,
    model or training), and when there are none of those either, all of the run's axes.
    """
    first = error.errors()[0]
    loc, value = error_location(first)
    location = _error_path(loc)
    blamed = [
        title
        for title, paths in point.axis_paths.items()
        if any(_is_within(path, location) or _is_within(location, path) for path in paths)
    ]
    if not blamed:
        section = location.split(".")[0].split("[")[0]
        blamed = [
            title
            for title, paths in point.axis_paths.items()
            if any(path.split(".")[0] == section for path in paths)
        ]
    if not blamed:
        blamed = list(point.axis_paths)
    named = " and ".join(f"{title} = {_short_json(point.values[title])}" for title in blamed)
    subject = "axis value {} makes" if len(blamed) == 1 else "axis values {} make"
    reason = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    shown = _short_json(value)
    return named, (
        f"sweep {subject.format(named)} run {point.index} invalid: "
        f"{location}: {shown} is invalid: {reason}"
    )


_UNION_TAGS = frozenset(DATASET_FAMILIES + MODEL_KINDS)


def _error_path(loc: Sequence[int | str]) -> str:
    """Turn a pydantic location such as ("dataset", "dots", "counts", 0) into dataset.counts[0]."""
    path = ""
    previous: int | str | None = None
    for part in loc:
        after_union = previous in ("dataset", "model")
        previous = part
        if after_union and part in _UNION_TAGS:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Map each leaf of a JSON object to its dotted path; lists are leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        leaves.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def _canonical(value: Any) -> str:
    """Return JSON text that is equal for equal values, whatever the key order."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except TypeError:
        return repr(value)


def _short_json(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, separators=(", ", ": ")) if _is_json(value) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
