"""One-click studies that reproduce the published findings on generative models' bias.

Each template builds a study with sweep axes for one finding of Zhao, Ren,
Yuan, Song, Goodman and Ermon, "Bias and Generalization in Deep Generative
Models: An Empirical Study" (NeurIPS 2018, arXiv:1811.03259), and has two
presets:

- `quick`: 32x32 images and the models' `quick` presets (`biaslab.presets`),
  sized for 2 CPU cores;
- `full`: 64x64 images and the models' `paper` presets (200,000 steps each),
  sized for GPUs.

Runs are ordered model, then dataset condition, then seed. The control runs
trained on a single mode are sweep values of the dataset axis, so the additive
prediction can be computed from the study alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import JsonValue

from biaslab.design import Dataset, DotsDataset, RunSpec, StudyCreate, SweepAxis
from biaslab.design.combinations import CombinationsDataset
from biaslab.design.pie import PieDataset
from biaslab.design.shapes import HeldOutCombination, ShapesDataset
from biaslab.presets import PresetName, get_preset

TemplatePreset = Literal["quick", "full"]
TEMPLATE_PRESETS: tuple[str, ...] = get_args(TemplatePreset)

# The model preset and image size behind each template preset.
_MODEL_PRESET: dict[TemplatePreset, PresetName] = {"quick": "quick", "full": "paper"}
_IMAGE_SIZE: dict[TemplatePreset, Literal[32, 64]] = {"quick": 32, "full": 64}
_MODEL_TITLES = {"vae": "VAE", "wgan_gp": "WGAN-GP", "pixelcnn": "PixelCNN", "ddpm": "DDPM"}


@dataclass(frozen=True)
class PresetPlan:
    """The model kinds and seeds that one preset of a template trains."""

    description: str
    model_kinds: tuple[str, ...]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class DatasetAxis:
    """The dataset conditions of a template: one dataset per value, with a label each."""

    path: str
    values: tuple[JsonValue, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Template:
    """A study that reproduces one finding, with a quick and a full preset."""

    name: str
    title: str
    shows: str
    presets: dict[TemplatePreset, PresetPlan]
    base_dataset: Callable[[Literal[32, 64]], Dataset]
    dataset_axis: DatasetAxis | None

    def study(self, preset: str) -> StudyCreate:
        """Return the study of `preset`; raise KeyError naming the presets for an unknown one."""
        plan = self._plan(preset)
        preset_name = _MODEL_PRESET[preset]  # type: ignore[index]
        models = [get_preset(kind, preset_name) for kind in plan.model_kinds]
        dataset = self.base_dataset(_IMAGE_SIZE[preset])  # type: ignore[index]
        base = models[0].run_spec(dataset)

        sweep: list[SweepAxis] = []
        if len(models) > 1:
            sweep.append(
                SweepAxis(
                    name="model",
                    values=[_model_setting(model.run_spec(dataset)) for model in models],
                    labels=[_MODEL_TITLES.get(kind, kind) for kind in plan.model_kinds],
                )
            )
        if self.dataset_axis is not None:
            sweep.append(
                SweepAxis(
                    name="dataset",
                    path=self.dataset_axis.path,
                    values=list(self.dataset_axis.values),
                    labels=list(self.dataset_axis.labels),
                )
            )
        sweep.append(SweepAxis(name="seed", path="training.seed", values=list(plan.seeds)))
        return StudyCreate(
            name=f"{self.title} ({preset})",
            dataset=base.dataset,
            model=base.model,
            training=base.training,
            sweep=sweep,
        )

    def run_count(self, preset: str) -> int:
        """Return how many runs `preset` makes, without validating them."""
        plan = self._plan(preset)
        conditions = 1 if self.dataset_axis is None else len(self.dataset_axis.values)
        return len(plan.model_kinds) * conditions * len(plan.seeds)

    def to_json(self) -> dict[str, Any]:
        """Return the template as `GET /api/templates` lists it."""
        return {
            "name": self.name,
            "title": self.title,
            "shows": self.shows,
            "presets": [
                {
                    "name": name,
                    "description": plan.description,
                    "models": list(plan.model_kinds),
                    "seeds": list(plan.seeds),
                    "runs": self.run_count(name),
                }
                for name, plan in self.presets.items()
            ],
        }

    def _plan(self, preset: str) -> PresetPlan:
        if preset not in self.presets:
            raise KeyError(
                f"template {self.name!r} has no preset {preset!r}; use one of "
                f"{sorted(self.presets)}"
            )
        return self.presets[preset]  # type: ignore[index]


def _model_setting(spec: RunSpec) -> dict[str, JsonValue]:
    """Return the model and the training recipe of a model preset, as one sweep value."""
    return {
        "model": spec.model.model_dump(mode="json"),
        "training": spec.training.model_dump(mode="json"),
    }


def _plans(
    quick_kinds: Sequence[str],
    quick_seeds: Sequence[int],
    full_kinds: Sequence[str] = ("vae", "wgan_gp"),
    full_seeds: Sequence[int] = (0, 1, 2),
) -> dict[TemplatePreset, PresetPlan]:
    def describe(kinds: Sequence[str], seeds: Sequence[int], where: str) -> str:
        names = " and ".join(_MODEL_TITLES.get(kind, kind) for kind in kinds)
        return f"{names}, {len(seeds)} seeds, {where}"

    return {
        "quick": PresetPlan(
            description=describe(
                quick_kinds, quick_seeds, "32x32, the models' quick presets, for 2 CPU cores"
            ),
            model_kinds=tuple(quick_kinds),
            seeds=tuple(quick_seeds),
        ),
        "full": PresetPlan(
            description=describe(
                full_kinds, full_seeds, "64x64, the models' paper presets, for GPUs"
            ),
            model_kinds=tuple(full_kinds),
            seeds=tuple(full_seeds),
        ),
    }


def _dots(counts: list[int]) -> Callable[[Literal[32, 64]], Dataset]:
    def build(image_size: Literal[32, 64]) -> Dataset:
        return DotsDataset(image_size=image_size, counts=counts)

    return build


def _counts_axis(count_sets: Sequence[Sequence[int]]) -> DatasetAxis:
    return DatasetAxis(
        path="dataset.counts",
        values=tuple([list(counts) for counts in count_sets]),
        labels=tuple(" and ".join(str(count) for count in counts) for counts in count_sets),
    )


def _red_pie(image_size: Literal[32, 64]) -> Dataset:
    return PieDataset(image_size=image_size, colours=2, values=[(5, 5, 5, 3), (5, 5, 5, 4)])


def _red_values(*shares: int) -> JsonValue:
    # Size, x and y in the middle of the 1-9 scale; red share value v is a share of v / 10.
    return [[5, 5, 5, share] for share in shares]


def _combinations(image_size: Literal[32, 64]) -> Dataset:
    return CombinationsDataset(image_size=image_size, combinations=10, selection_seed=0)


def _held_out_pair(image_size: Literal[32, 64]) -> Dataset:
    return ShapesDataset(
        image_size=image_size,
        shapes=["circle", "square", "triangle"],
        colours=["red", "green", "blue"],
        held_out=[HeldOutCombination(shapes=("circle", "square"), colours=("red", "blue"))],
    )


TEMPLATES: dict[str, Template] = {
    template.name: template
    for template in (
        Template(
            name="single-count",
            title="A single count, k = 1 to 5",
            shows=(
                "Trained on images that all have k dots, models generate counts spread "
                "around k, and the spread grows with k, roughly log-normal (Weber-like)."
            ),
            presets=_plans(quick_kinds=("vae",), quick_seeds=(0, 1)),
            base_dataset=_dots([1]),
            dataset_axis=_counts_axis([[1], [2], [3], [4], [5]]),
        ),
        Template(
            name="counts-2-7",
            title="Counts 2 and 7 against 2 and 7 alone",
            shows=(
                "Trained on 2 and 7 dots, far apart, models generate two bumps close to "
                "the sum of the runs trained on 2 alone and on 7 alone (additive)."
            ),
            presets=_plans(quick_kinds=("vae",), quick_seeds=(0, 1)),
            base_dataset=_dots([2, 7]),
            dataset_axis=_counts_axis([[2, 7], [2], [7]]),
        ),
        Template(
            name="counts-2-4",
            title="Counts 2 and 4 against 2 and 4 alone",
            shows=(
                "Trained on 2 and 4 dots, close together, models generate 3 dots, never "
                "seen in training, more often than the sum of the single-count runs "
                "predicts (prototype enhancement)."
            ),
            presets=_plans(quick_kinds=("vae", "wgan_gp"), quick_seeds=(0, 1, 2)),
            base_dataset=_dots([2, 4]),
            dataset_axis=_counts_axis([[2, 4], [2], [4]]),
        ),
        Template(
            name="red-share",
            title="Red share 0.3 with 0.4 against 0.3 with 0.9",
            shows=(
                "Pies with red shares 0.3 and 0.4 draw generated shares between the two "
                "(prototype enhancement); shares 0.3 and 0.9 stay two separate modes."
            ),
            # The red share's bins are steps of 0.05, so the index of 0.3 with 0.4 counts
            # the samples in the bin of 0.35.
            presets=_plans(quick_kinds=("vae",), quick_seeds=(0, 1)),
            base_dataset=_red_pie,
            dataset_axis=DatasetAxis(
                path="dataset.values",
                values=(
                    _red_values(3, 4),
                    _red_values(3, 9),
                    _red_values(3),
                    _red_values(4),
                    _red_values(9),
                ),
                labels=("0.3 and 0.4", "0.3 and 0.9", "0.3", "0.4", "0.9"),
            ),
        ),
        Template(
            name="combinations",
            title="10, 20, 40, 80 and 160 training combinations",
            shows=(
                "With few combinations of pie features in training, models reproduce "
                "them (memorization); with many, new combinations appear: precision "
                "falls and recall at precision 0.9 stops growing with N."
            ),
            presets=_plans(quick_kinds=("vae",), quick_seeds=(0, 1)),
            base_dataset=_combinations,
            dataset_axis=DatasetAxis(
                path="dataset.combinations",
                values=(10, 20, 40, 80, 160),
                labels=("10", "20", "40", "80", "160"),
            ),
        ),
        Template(
            name="held-out-shapes",
            title="Shapes with one held-out pair",
            shows=(
                "A circle on the left and a square on the right are never red and blue "
                "together in training; the study measures how often models generate "
                "that held-out combination."
            ),
            presets=_plans(quick_kinds=("vae",), quick_seeds=(0, 1)),
            base_dataset=_held_out_pair,
            dataset_axis=None,
        ),
    )
}


def get_template(name: str) -> Template:
    """Return the template `name`; raise KeyError naming the templates for an unknown one."""
    template = TEMPLATES.get(name)
    if template is None:
        raise KeyError(f"template {name!r} does not exist; use one of {sorted(TEMPLATES)}")
    return template
