"""The dataset-family interface: draw images whose features are known, and read them back.

A family (dots, pie, combinations, shapes) pairs a renderer with a probe that
measures the same features. The training loop, the worker, the API and the
designer handle every family through this interface alone:

- `render` draws n images of a design and returns the true feature values of each;
- `probe` reads the same features from any images, generated or uploaded;
- `features` names the features and their bins, shared by training and
  generated histograms;
- `scores` turns the probed features of a sample into summary numbers, such as
  the precision and recall of combinations against the training cells;
- `training_cells` lists the feature values that training images take, for a
  family that draws them from a list, such as the cells of combinations.

Feature values are float64 arrays with one value per image. NaN marks an image
the probe could not read: "unrecognized" is an outcome that is counted, never
dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from biaslab.analysis.histogram import FeatureHistogram
from biaslab.design.base import Strict

DesignT = TypeVar("DesignT", bound=Strict)
FeatureValues = dict[str, np.ndarray]


@dataclass(frozen=True)
class Feature:
    """One measured feature and its bins: a value falls in the bin of the nearest centre.

    `categorical` features (a shape, a colour) hold the index of a label, and
    the per-image results report the label instead of the index.
    """

    name: str
    title: str
    centres: tuple[float, ...]
    labels: tuple[str, ...]
    categorical: bool = False

    def __post_init__(self) -> None:
        if len(self.centres) != len(self.labels) or not self.centres:
            raise ValueError(f"feature {self.name}: give one label per bin centre")

    def bin_indices(self, values: np.ndarray) -> np.ndarray:
        """Return each value's bin index (-1 for NaN); values past either end go to the end bins."""
        values = np.asarray(values, dtype=np.float64)
        centres = np.asarray(self.centres)
        recognized = ~np.isnan(values)
        midpoints = (centres[1:] + centres[:-1]) / 2
        indices = np.searchsorted(midpoints, np.where(recognized, values, centres[0]))
        return np.where(recognized, indices, -1)

    def histogram(self, values: np.ndarray) -> FeatureHistogram:
        """Count the values per bin; NaN values are tallied as unrecognized."""
        indices = self.bin_indices(values)
        counts = np.bincount(indices[indices >= 0], minlength=len(self.centres))
        centres = np.asarray(self.centres)
        edges = np.concatenate(
            [[centres[0] - 0.5], (centres[1:] + centres[:-1]) / 2, [centres[-1] + 0.5]]
        )
        return FeatureHistogram(
            edges=edges.tolist(),
            labels=list(self.labels),
            counts=counts.astype(int).tolist(),
            unrecognized=int((indices < 0).sum()),
            total=int(indices.size),
        )

    def describe(self, value: float) -> float | int | str | None:
        """Return one image's value as JSON: null when unrecognized, a label when categorical."""
        if np.isnan(value):
            return None
        if self.categorical:
            return self.labels[int(self.bin_indices(np.array([value]))[0])]
        if float(value).is_integer():
            return int(value)
        return round(float(value), 4)


@dataclass(frozen=True)
class RenderedBatch:
    """Rendered images with the true features of each."""

    images: np.ndarray  # float32, (N, H, W, 3), values in [0, 1]
    features: FeatureValues  # name -> float64 (N,)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, rows: np.ndarray) -> RenderedBatch:
        """Return the images and features at `rows`."""
        return RenderedBatch(
            images=self.images[rows],
            features={name: values[rows] for name, values in self.features.items()},
        )


class DatasetFamily(ABC, Generic[DesignT]):
    """A family of training distributions with a renderer and a probe for its features."""

    name: ClassVar[str]

    @abstractmethod
    def features(self, design: DesignT) -> list[Feature]:
        """Return the features that `render` and `probe` report for `design`, in display order."""

    @abstractmethod
    def render(self, design: DesignT, n: int, rng: np.random.Generator) -> RenderedBatch:
        """Draw n training images of `design` with their true features, using only `rng`."""

    @abstractmethod
    def probe(self, images: np.ndarray, design: DesignT) -> FeatureValues:
        """Read every feature of (N, H, W, 3) float images in [0, 1]; NaN where unreadable."""

    def scores(self, design: DesignT, probed: FeatureValues) -> dict[str, float]:
        """Return summary numbers of a probed sample; none unless the family defines some."""
        return {}

    def histograms(self, design: DesignT, values: FeatureValues) -> dict[str, FeatureHistogram]:
        """Histogram each feature on its bins."""
        return {
            feature.name: feature.histogram(values[feature.name])
            for feature in self.features(design)
        }

    def training_cells(self, design: DesignT) -> list[dict[str, int]] | None:
        """Return the feature values of each training cell, or None for a family without cells."""
        return None

    def describe(self, design: DesignT, values: FeatureValues) -> list[dict[str, Any]]:
        """Return one JSON object of feature values per image, in image order."""
        features = self.features(design)
        n = len(next(iter(values.values()))) if values else 0
        return [
            {feature.name: feature.describe(values[feature.name][i]) for feature in features}
            for i in range(n)
        ]
