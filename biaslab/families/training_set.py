"""The training images of one run, for any dataset family, seeded and resumable."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from biaslab.design.base import Strict
from biaslab.families import family_for
from biaslab.families.base import FeatureValues, RenderedBatch

logger = logging.getLogger(__name__)

# Reference features are rendered this many images at a time, so that drawing
# 10,000 of them never keeps 10,000 images in memory.
REFERENCE_CHUNK = 1024


class TrainingSet:
    """Training images of a design, drawn from a generator seeded by the run's seed.

    When the design has `training_images` set, a fixed set of that many images
    is rendered once at construction and batches sample from it with
    replacement. Otherwise every batch is rendered fresh. The true features of
    the training distribution come from a second generator, so reading them
    never changes the batches.
    """

    def __init__(self, design: Strict, seed: int) -> None:
        self.design = design
        self.family = family_for(design)
        batch_seed, reference_seed = np.random.SeedSequence(seed).spawn(2)
        self._rng = np.random.default_rng(batch_seed)
        self._reference_rng = np.random.default_rng(reference_seed)
        self._fixed: RenderedBatch | None = None
        # Only some families offer a fixed training set; the others always render fresh.
        size: int | None = getattr(design, "training_images", None)
        if size is not None:
            self._fixed = self.family.render(design, size, self._rng)
            logger.info("rendered a fixed %s training set of %d images", self.family.name, size)

    @property
    def fixed(self) -> RenderedBatch | None:
        """The fixed training set, or None when every batch is rendered fresh."""
        return self._fixed

    def batch(self, batch_size: int) -> RenderedBatch:
        """Return a minibatch drawn with replacement from the fixed set, or fresh images."""
        if self._fixed is None:
            return self.family.render(self.design, batch_size, self._rng)
        rows = self._rng.integers(0, len(self._fixed), size=batch_size)
        return self._fixed.take(rows)

    def rng_state(self) -> dict[str, Any]:
        """Return the state of the generator that draws batches, for a checkpoint.

        The reference generator is left out because the loop reads it only before step 1.
        """
        return dict(self._rng.bit_generator.state)

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore a state that `rng_state` returned, so the next batches repeat."""
        self._rng.bit_generator.state = state

    def reference_features(self, n: int) -> FeatureValues:
        """Return the true features of n training images, for the training histograms.

        A fixed set returns the features of its first n images, repeating the
        whole set cyclically when n exceeds its size. Fresh training renders n
        new images from the reference generator and keeps only their features.
        """
        if self._fixed is not None:
            return {name: np.resize(values, n) for name, values in self._fixed.features.items()}
        chunks: list[FeatureValues] = []
        for start in range(0, n, REFERENCE_CHUNK):
            size = min(REFERENCE_CHUNK, n - start)
            chunks.append(self.family.render(self.design, size, self._reference_rng).features)
        if not chunks:
            return {feature.name: np.empty(0) for feature in self.family.features(self.design)}
        return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
