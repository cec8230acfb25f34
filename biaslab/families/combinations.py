"""The combinations family: pies from N training cells, and how generated pies cover them.

Besides the pie features, every image has a `cell`: the index of its training cell in
`design.cells()`, or N ("other") for a recognized pie whose cell is not a training cell.
A probed pie's cell is the grid cell nearest to its values in each feature: size and red
snap to {1, 3, 5, 7, 9}, x and y to 1..9. A pie with any of the four unreadable has no
cell (NaN).

`scores` compares the cells of generated samples with the training cells:

- precision: the share of recognized samples whose cell is a training cell. The
  denominator is the samples with a cell, so unrecognized samples do not count; it is NaN
  when no sample was recognized;
- recall: the share of training cells that at least one sample falls in;
- recognized_share: the share of all samples that have a cell.
"""

from __future__ import annotations

import functools

import numpy as np

from biaslab.datasets.pie import render_pies
from biaslab.design.combinations import CELL_FEATURES, GRID, Cell, CombinationsDataset
from biaslab.families.base import DatasetFamily, Feature, FeatureValues, RenderedBatch
from biaslab.families.pie import pie_features, probe_pie_features, true_features

# Feature names of the cell's coordinates, in CELL_FEATURES order.
_CELL_FEATURE_NAMES = ("size", "x", "y", "red_share")
OTHER_LABEL = "other"


@functools.lru_cache(maxsize=32)
def cell_feature(cells: tuple[Cell, ...]) -> Feature:
    """Return the categorical `cell` feature: one bin per training cell, then "other"."""
    labels = [f"{size}/{x}/{y}/{red}" for size, x, y, red in cells]
    return Feature(
        name="cell",
        title="Training cell (size/x/y/red); other = a cell outside the training set",
        centres=tuple(float(index) for index in range(len(cells) + 1)),
        labels=(*labels, OTHER_LABEL),
        categorical=True,
    )


def cell_indices(features: FeatureValues, cells: tuple[Cell, ...]) -> np.ndarray:
    """Return each image's cell index (len(cells) for "other"), NaN when a value is NaN."""
    snapped = [
        _nearest(features[name], np.asarray(GRID[grid_name], dtype=np.float64))
        for name, grid_name in zip(_CELL_FEATURE_NAMES, CELL_FEATURES, strict=True)
    ]
    recognized = np.all([~np.isnan(values) for values in snapped], axis=0)
    # Grid values are 1..9, so one decimal digit per feature makes a unique key.
    keys = np.zeros(recognized.shape, dtype=np.int64)
    for values in snapped:
        keys = keys * 10 + np.where(recognized, values, 0).astype(np.int64)
    lookup = np.full(10 ** len(snapped), len(cells), dtype=np.int64)
    for index, cell in enumerate(cells):
        lookup[((cell[0] * 10 + cell[1]) * 10 + cell[2]) * 10 + cell[3]] = index
    return np.where(recognized, lookup[keys].astype(np.float64), np.nan)


def _nearest(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Return the grid value nearest to each value (NaN stays NaN); past the ends, the end."""
    midpoints = (grid[1:] + grid[:-1]) / 2
    indices = np.searchsorted(midpoints, np.nan_to_num(values))
    return np.where(np.isnan(values), np.nan, grid[indices])


class CombinationsFamily(DatasetFamily[CombinationsDataset]):
    """Pies drawn uniformly from the design's training cells, with their cell as a feature."""

    name = "combinations"

    def features(self, design: CombinationsDataset) -> list[Feature]:
        return [*pie_features(has_red=True), cell_feature(design.cells())]

    def render(
        self, design: CombinationsDataset, n: int, rng: np.random.Generator
    ) -> RenderedBatch:
        cells = np.asarray(design.cells(), dtype=np.int64)
        indices = rng.integers(0, cells.shape[0], size=n)
        values = cells[indices]
        images = render_pies(
            values,
            image_size=design.image_size,
            colours=design.colours,
            noise=design.noise,
            random_rotation=design.random_rotation,
            rng=rng,
        )
        features = true_features(values, design.colours)
        features["cell"] = indices.astype(np.float64)
        return RenderedBatch(images=images, features=features)

    def training_cells(self, design: CombinationsDataset) -> list[dict[str, int]]:
        """Return the design's N cells as {size, x, y, red}, in the order of the `cell` bins."""
        return [dict(zip(CELL_FEATURES, cell, strict=True)) for cell in design.cells()]

    def probe(self, images: np.ndarray, design: CombinationsDataset) -> FeatureValues:
        features = probe_pie_features(images, has_red=True)
        features["cell"] = cell_indices(features, design.cells())
        return features

    def scores(self, design: CombinationsDataset, probed: FeatureValues) -> dict[str, float]:
        return combination_scores(probed["cell"], len(design.cells()))


def combination_scores(cells: np.ndarray, training_cells: int) -> dict[str, float]:
    """Return precision, recall and the recognized share of probed cell indices.

    Indices below `training_cells` are training cells, `training_cells` is "other", and NaN
    is unrecognized. The module docstring defines the three numbers.
    """
    cells = np.asarray(cells, dtype=np.float64)
    recognized = cells[~np.isnan(cells)]
    in_training = recognized[recognized < training_cells]
    precision = in_training.size / recognized.size if recognized.size else float("nan")
    recall = np.unique(in_training).size / training_cells
    recognized_share = recognized.size / cells.size if cells.size else float("nan")
    return {
        "precision": float(precision),
        "recall": float(recall),
        "recognized_share": float(recognized_share),
    }
