"""The family registry, feature bins, the dots family and the generic training set."""

from __future__ import annotations

import numpy as np
import pytest

from biaslab.analysis.histogram import MAX_COUNT_BIN, count_histogram
from biaslab.design import DotsDataset
from biaslab.design.combinations import CombinationsDataset
from biaslab.design.pie import PieDataset
from biaslab.families import FAMILIES, Feature, family_for
from biaslab.families.dots import COUNT_FEATURE, DotsFamily
from biaslab.families.pie import PieFamily
from biaslab.families.training_set import TrainingSet
from biaslab.probes.samples import InvalidSamples

DOTS = DotsDataset(counts=[1, 3], image_size=32)
PIE_FEATURES = {feature.name: feature for feature in PieFamily().features(PieDataset())}
SIZES = Feature(name="size", title="Size", centres=(1.0, 3.0, 5.0), labels=("1", "3", "5"))
SHAPES = Feature(
    name="shape",
    title="Shape",
    centres=(0.0, 1.0, 2.0),
    labels=("circle", "square", "triangle"),
    categorical=True,
)


# Registry


def test_registry_names_match_families():
    assert "dots" in FAMILIES
    for name, family in FAMILIES.items():
        assert family.name == name, f"{type(family).__name__} is registered as {name!r}"


def test_family_for_dots_design():
    assert isinstance(family_for(DOTS), DotsFamily)


def test_family_for_unknown_raises():
    unknown = DotsDataset.model_construct(family="stars")
    with pytest.raises(ValueError, match=r"dataset family 'stars' is not registered; registered: "):
        family_for(unknown)


# Feature bins


def test_feature_bins_nearest_centre():
    values = np.array([0.0, 1.9, 2.1, 3.9, 4.1, 99.0, np.nan])
    assert SIZES.bin_indices(values).tolist() == [0, 0, 1, 1, 2, 2, -1]


def test_feature_histogram_counts_unrecognized():
    histogram = SIZES.histogram(np.array([1.0, 1.2, 5.0, np.nan, np.nan]))
    assert histogram.counts == [2, 0, 1]
    assert histogram.unrecognized == 2
    assert histogram.total == 5
    assert histogram.labels == ["1", "3", "5"]
    assert histogram.edges == [0.5, 2.0, 4.0, 5.5]


def test_feature_describe_values():
    assert SIZES.describe(np.nan) is None
    assert SIZES.describe(3.0) == 3
    assert SIZES.describe(0.123456) == 0.1235
    assert SHAPES.describe(2.0) == "triangle"


def test_feature_needs_label_per_centre():
    with pytest.raises(ValueError, match="one label per bin centre"):
        Feature(name="bad", title="Bad", centres=(1.0, 2.0), labels=("1",))


def test_count_feature_matches_old_histogram():
    counts = np.array([1, 2, 2, 16, 40, -1])
    values = np.where(counts < 0, np.nan, counts.astype(float))
    generic = COUNT_FEATURE.histogram(values)
    old = count_histogram(counts)
    assert generic.counts == old.counts
    assert generic.edges == old.edges
    assert generic.unrecognized == old.unrecognized == 1
    assert generic.labels[0] == "1"
    assert generic.labels[-1] == f"{MAX_COUNT_BIN}+", "the last bin holds every larger count"


# The dots family


def test_dots_render_reports_counts():
    batch = DotsFamily().render(DOTS, 50, np.random.default_rng(0))
    assert batch.images.shape == (50, 32, 32, 3)
    assert batch.images.dtype == np.float32
    assert set(batch.features) == {feature.name for feature in DotsFamily().features(DOTS)}
    assert all(values.shape == (50,) for values in batch.features.values())
    assert set(np.unique(batch.features["count"])) <= {1.0, 3.0}


def test_dots_probe_reads_own_renders():
    family = DotsFamily()
    batch = family.render(DOTS, 100, np.random.default_rng(1))
    probed = family.probe(batch.images, DOTS)
    exact = np.mean(probed["count"] == batch.features["count"])
    assert exact >= 0.99, f"only {exact:.0%} of clean renders were counted exactly"


def test_dots_probe_blank_is_nan():
    probed = DotsFamily().probe(np.ones((3, 32, 32, 3), dtype=np.float32), DOTS)
    assert np.isnan(probed["count"]).all(), "a blank image must be unrecognized, not 0"


def test_dots_probe_small_radius_names_field():
    design = DotsDataset(counts=[1], image_size=64, dot_radius=0.05)
    with pytest.raises(InvalidSamples) as raised:
        DotsFamily().probe(np.ones((1, 32, 32, 3), dtype=np.float32), design)
    assert raised.value.field == "dot_radius"
    assert "1.60 px in images 32 px wide" in str(raised.value)


def test_dots_describe_keeps_count_key():
    family = DotsFamily()
    values = {feature.name: np.array([2.0, np.nan]) for feature in family.features(DOTS)}
    described = family.describe(DOTS, values)
    assert [image["count"] for image in described] == [2, None], "null when unrecognized"


# The training set


def test_training_set_same_seed_same_batches():
    first, second = TrainingSet(DOTS, seed=4), TrainingSet(DOTS, seed=4)
    for _ in range(2):
        a, b = first.batch(8), second.batch(8)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.features["count"], b.features["count"])
    other = TrainingSet(DOTS, seed=5).batch(8)
    assert not np.array_equal(other.images, TrainingSet(DOTS, seed=4).batch(8).images)


def test_training_set_resumes_from_rng_state():
    data = TrainingSet(DOTS, seed=6)
    data.batch(8)
    state = data.rng_state()
    expected = data.batch(8)

    resumed = TrainingSet(DOTS, seed=6)
    resumed.set_rng_state(state)

    np.testing.assert_array_equal(resumed.batch(8).images, expected.images)


def test_reference_leaves_batches_unchanged():
    data, twin = TrainingSet(DOTS, seed=7), TrainingSet(DOTS, seed=7)
    data.reference_features(3000)
    np.testing.assert_array_equal(data.batch(8).images, twin.batch(8).images)


def test_reference_follows_weights():
    design = DotsDataset(counts=[2, 5], weights=[3, 1], image_size=32)
    reference = TrainingSet(design, seed=8).reference_features(4000)["count"]
    assert reference.shape == (4000,)
    assert set(np.unique(reference)) == {2.0, 5.0}
    assert np.mean(reference == 2.0) == pytest.approx(0.75, abs=0.03)


def test_reference_of_fixed_set_is_its_own():
    design = DotsDataset(counts=[1, 2, 3], image_size=32, training_images=100)
    data = TrainingSet(design, seed=9)
    assert data.fixed is not None
    assert len(data.fixed) == 100
    own = data.fixed.features["count"]
    np.testing.assert_array_equal(data.reference_features(40)["count"], own[:40])
    longer = data.reference_features(250)["count"]
    np.testing.assert_array_equal(longer[:100], own)
    np.testing.assert_array_equal(longer[200:250], own[:50])


def test_fixed_set_batches_come_from_it():
    design = DotsDataset(counts=[1, 2], image_size=32, training_images=64)
    data = TrainingSet(design, seed=10)
    assert data.fixed is not None
    batch = data.batch(16)
    flat = data.fixed.images.reshape(64, -1)
    for image in batch.images:
        assert (flat == image.reshape(-1)).all(axis=1).any(), "a batch image is not in the set"


# The training set with other families


def test_training_set_of_every_family():
    # Each registered family works through the same training set, with its defaults.
    designs = {
        "pie": PieDataset(),
        "combinations": CombinationsDataset(combinations=4),
    }
    for name, design in designs.items():
        family = FAMILIES[name]
        names = {feature.name for feature in family.features(design)}
        first, second = TrainingSet(design, seed=2), TrainingSet(design, seed=2)
        batch = first.batch(8)
        assert batch.images.shape == (8, 32, 32, 3), name
        np.testing.assert_array_equal(batch.images, second.batch(8).images, err_msg=name)
        reference = first.reference_features(300)
        assert set(reference) == names, name
        assert all(values.shape == (300,) for values in reference.values()), name
        histograms = family.histograms(design, reference)
        assert all(histogram.unrecognized == 0 for histogram in histograms.values()), name


def test_fixed_pie_set_reference_is_its_own():
    design = PieDataset(values=[(1, 5, 5, 3), (9, 5, 5, 7)], training_images=64)
    data = TrainingSet(design, seed=3)
    assert data.fixed is not None
    reference = data.reference_features(100)
    np.testing.assert_array_equal(reference["size"][:64], data.fixed.features["size"])
    assert set(np.unique(reference["size"])) == {1.0, 9.0}


# The pie family's bins


def test_pie_red_share_has_half_value_bins():
    red = PIE_FEATURES["red_share"]
    assert red.centres == tuple(1 + step / 2 for step in range(17))
    assert red.labels[:6] == ("1", "1.5", "2", "2.5", "3", "3.5")
    assert red.labels[-1] == "9"
    # 3.25 and 3.75 are the edges of the bin 3.5, so 0.3 and 0.4 keep bins of their own.
    values = np.array([3.0, 3.24, 3.26, 3.5, 3.74, 3.76, 4.0, 0.2, 12.0, np.nan])
    labels = [red.labels[index] if index >= 0 else None for index in red.bin_indices(values)]
    assert labels == ["3", "3", "3.5", "3.5", "3.5", "4", "4", "1", "9", None]


def test_pie_red_share_histogram_edges():
    histogram = PIE_FEATURES["red_share"].histogram(np.array([3.0, 3.5, 4.0, 4.0]))
    assert len(histogram.counts) == 17
    assert histogram.edges[4:8] == [2.75, 3.25, 3.75, 4.25]
    assert histogram.counts[4:7] == [1, 1, 2]
    assert histogram.labels[5] == "3.5"


def test_pie_other_features_keep_value_bins():
    for name in ("size", "x", "y", "colours"):
        feature = PIE_FEATURES[name]
        assert all(centre.is_integer() for centre in feature.centres), name
        assert feature.labels[0] == "1", name
    assert len(PIE_FEATURES["size"].centres) == 9
    assert len(PIE_FEATURES["colours"].centres) == 4
