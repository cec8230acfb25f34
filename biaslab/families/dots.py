"""The dots family: images of k coloured dots, and the dot counter that reads them back."""

from __future__ import annotations

import numpy as np

from biaslab.analysis.histogram import MAX_COUNT_BIN, UNRECOGNIZED
from biaslab.datasets.dots import render_dots
from biaslab.design import DotsDataset
from biaslab.families.base import DatasetFamily, Feature, FeatureValues, RenderedBatch
from biaslab.probes.count import read_dots
from biaslab.probes.samples import check_dot_radius

# One bin per count from 1 to MAX_COUNT_BIN; larger counts fall into the last bin.
COUNT_FEATURE = Feature(
    name="count",
    title="Dot count",
    centres=tuple(float(count) for count in range(1, MAX_COUNT_BIN + 1)),
    labels=(*(str(count) for count in range(1, MAX_COUNT_BIN)), f"{MAX_COUNT_BIN}+"),
)
# Mean dot radius per image as a fraction of the width, in bins 0.01 wide over the allowed
# radii 0.04-0.15.
DOT_SIZE_FEATURE = Feature(
    name="dot_size",
    title="Mean dot radius (fraction of the width)",
    centres=tuple(round(0.04 + 0.01 * step, 2) for step in range(12)),
    labels=tuple(f"{0.04 + 0.01 * step:.2f}" for step in range(12)),
)


class DotsFamily(DatasetFamily[DotsDataset]):
    """Dots rendered by `biaslab.datasets.dots`, counted by `biaslab.probes.count`."""

    name = "dots"

    def features(self, design: DotsDataset) -> list[Feature]:
        return [COUNT_FEATURE, DOT_SIZE_FEATURE]

    def render(self, design: DotsDataset, n: int, rng: np.random.Generator) -> RenderedBatch:
        batch = render_dots(design, n, rng)
        features = {"count": batch.counts.astype(float), "dot_size": batch.mean_radii}
        return RenderedBatch(images=batch.images, features=features)

    def probe(self, images: np.ndarray, design: DotsDataset) -> FeatureValues:
        """Count the dots and measure their mean radius.

        Raises InvalidSamples when the smallest radius is too small at this width, or when a
        dot of the largest radius would be taller than the images.
        """
        bounds = design.radius_bounds()
        for radius in bounds:
            check_dot_radius(radius, images.shape[1], images.shape[2])
        reading = read_dots(images, bounds)
        counts = np.where(reading.counts == UNRECOGNIZED, np.nan, reading.counts.astype(float))
        return {"count": counts, "dot_size": reading.mean_radii}
