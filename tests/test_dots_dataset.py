"""The dots renderer and training set: shapes, determinism, true counts, spacing, weights."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import stats

from biaslab.datasets.dots import (
    MAX_CHANNEL,
    MIN_CENTRE_DISTANCE,
    DotLayout,
    DotsTrainingSet,
    check_counts_fit,
    largest_count_that_fits,
    place_dots,
    render_counts,
    render_dots,
)
from biaslab.design import DotsDataset


def interior_colours(image: np.ndarray) -> dict[tuple[float, ...], np.ndarray]:
    """Map each dot colour in a noise-free render to the (y, x) of its interior pixels.

    Interior pixels are fully covered by one dot, so they have exactly its colour and equal
    their four neighbours. Rim pixels blend with white and differ from their neighbours.
    """
    height, width, _ = image.shape
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), constant_values=1.0)
    centre = padded[1:-1, 1:-1]
    same = np.ones((height, width), dtype=bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        neighbour = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        same &= (neighbour == centre).all(axis=2)
    same &= (centre < 1.0).any(axis=2)
    regions: dict[tuple[float, ...], list[tuple[int, int]]] = {}
    for y, x in zip(*np.nonzero(same), strict=True):
        regions.setdefault(tuple(image[y, x].tolist()), []).append((y, x))
    return {colour: np.array(pixels) for colour, pixels in regions.items()}


@pytest.mark.parametrize("image_size", [32, 64])
def test_render_shape_dtype_and_range(image_size):
    counts = np.array([0, 1, 5, 16])
    images = render_counts(
        counts, image_size=image_size, dot_radius=0.08, noise=0.03, rng=np.random.default_rng(0)
    )
    assert images.shape == (4, image_size, image_size, 3), f"shape {images.shape}"
    assert images.dtype == np.float32, f"dtype {images.dtype}"
    assert images.min() >= 0.0, f"minimum {images.min()} is below 0"
    assert images.max() <= 1.0, f"maximum {images.max()} is above 1"
    assert np.median(images[0]) > 0.95, "an image without dots should be a white background"


def test_render_dots_returns_int64_counts_from_design():
    design = DotsDataset(counts=[2, 7], image_size=32)
    batch = render_dots(design, 50, np.random.default_rng(0))
    assert batch.counts.dtype == np.int64, f"counts dtype {batch.counts.dtype}"
    assert batch.counts.shape == (50,), f"counts shape {batch.counts.shape}"
    assert set(batch.counts.tolist()) == {2, 7}, f"counts drawn {set(batch.counts.tolist())}"
    assert batch.images.shape == (50, 32, 32, 3), f"images shape {batch.images.shape}"


def test_same_seed_gives_same_images():
    design = DotsDataset(counts=[1, 4, 9], image_size=64, noise=0.03)
    first = render_dots(design, 300, np.random.default_rng(42))
    second = render_dots(design, 300, np.random.default_rng(42))
    other = render_dots(design, 300, np.random.default_rng(43))
    assert np.array_equal(first.counts, second.counts), "counts differ for the same seed"
    assert np.array_equal(first.images, second.images), "images differ for the same seed"
    assert not np.array_equal(first.images, other.images), "another seed gave the same images"


@pytest.mark.parametrize("image_size", [32, 64])
def test_true_counts_equal_dots_drawn(image_size):
    counts = np.arange(1, 17).repeat(4)
    images = render_counts(
        counts, image_size=image_size, dot_radius=0.08, noise=0.0, rng=np.random.default_rng(1)
    )
    for index, (image, count) in enumerate(zip(images, counts, strict=True)):
        found = len(interior_colours(image))
        assert found == count, f"image {index}: {found} dot colours found, {count} expected"


def test_dot_colours_within_allowed_range():
    images = render_counts(
        np.full(20, 10), image_size=64, dot_radius=0.08, noise=0.0, rng=np.random.default_rng(2)
    )
    colours = np.array([colour for image in images for colour in interior_colours(image)])
    assert colours.shape == (200, 3), f"found {colours.shape[0]} dot colours, expected 200"
    assert colours.max() <= MAX_CHANNEL + 1e-6, f"a channel is {colours.max()}, above 0.9"
    assert colours.min() >= 0.0, f"a channel is {colours.min()}, below 0"


@pytest.mark.parametrize(("image_size", "dot_radius"), [(32, 0.08), (64, 0.08), (64, 0.09)])
def test_placed_centres_keep_distance_and_stay_inside(image_size, dot_radius):
    radius = dot_radius * image_size
    centres = place_dots(
        np.full(500, 16), image_size=image_size, radius=radius, rng=np.random.default_rng(3)
    )
    gaps = np.linalg.norm(centres[:, :, None] - centres[:, None, :], axis=-1)
    gaps[:, np.arange(16), np.arange(16)] = np.inf
    assert gaps.min() > MIN_CENTRE_DISTANCE * radius, (
        f"two centres are {gaps.min():.3f} px apart, closer than {MIN_CENTRE_DISTANCE} radii"
    )
    assert centres.min() >= radius, f"a dot pokes out of the image: centre at {centres.min()}"
    assert centres.max() <= image_size - radius, f"a dot pokes out: centre at {centres.max()}"


def test_rendered_dots_do_not_overlap():
    # Independent of the placement code: dot centres re-derived from the pixels.
    image_size, dot_radius = 64, 0.08
    radius = dot_radius * image_size
    images = render_counts(
        np.full(100, 12),
        image_size=image_size,
        dot_radius=dot_radius,
        noise=0.0,
        rng=np.random.default_rng(4),
    )
    for index, image in enumerate(images):
        regions = interior_colours(image)
        centroids = np.array([pixels.mean(axis=0) + 0.5 for pixels in regions.values()])
        gaps = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
        np.fill_diagonal(gaps, np.inf)
        # Interior centroids sit within half a pixel of the true centres.
        assert gaps.min() > MIN_CENTRE_DISTANCE * radius - 1.0, (
            f"image {index}: dot centres {gaps.min():.2f} px apart, "
            f"less than {MIN_CENTRE_DISTANCE} radii ({MIN_CENTRE_DISTANCE * radius:.2f} px)"
        )


def test_count_weights_respected():
    design = DotsDataset(counts=[1, 3, 5], weights=[1, 2, 7], image_size=32, noise=0.0)
    batch = render_dots(design, 4000, np.random.default_rng(5))
    observed = np.array([(batch.counts == count).sum() for count in design.counts])
    expected = 4000 * np.array(design.count_probabilities())
    statistic, p_value = stats.chisquare(observed, expected)
    assert p_value > 1e-3, f"counts {observed} do not follow weights (expected {expected})"


def test_noise_reflects_instead_of_clipping():
    sigma = 0.03
    images = render_counts(
        np.zeros(50, dtype=np.int64),
        image_size=64,
        dot_radius=0.08,
        noise=sigma,
        rng=np.random.default_rng(6),
    )
    # Reflected at 1, white plus noise is 1 - |noise|, whose mean is 1 - sigma * sqrt(2 / pi).
    expected_mean = 1 - sigma * np.sqrt(2 / np.pi)
    assert abs(images.mean() - expected_mean) < 1e-3, (
        f"background mean {images.mean():.4f}, expected {expected_mean:.4f}"
    )
    assert (images == 1.0).mean() < 1e-3, "many pixels are exactly 1: noise was clipped"
    expected_std = sigma * np.sqrt(1 - 2 / np.pi)
    assert abs(images.std() - expected_std) < 1e-3, (
        f"background std {images.std():.4f}, expected {expected_std:.4f}"
    )


def test_large_noise_stays_in_unit_interval():
    images = render_counts(
        np.full(20, 3), image_size=32, dot_radius=0.08, noise=0.3, rng=np.random.default_rng(7)
    )
    assert images.min() >= 0.0, f"minimum {images.min()}"
    assert images.max() <= 1.0, f"maximum {images.max()}"


@pytest.mark.parametrize("image_size", [32, 64])
def test_sixteen_dots_fit_up_to_radius_0_09(image_size):
    largest = largest_count_that_fits(image_size=image_size, dot_radius=0.09)
    assert largest == 16, f"only {largest} dots fit at radius 0.09"


def test_unplaceable_count_raises_value_error():
    with pytest.raises(ValueError, match=r"placing 16 dots at dot_radius 0\.15") as raised:
        render_counts(
            np.array([2, 16]),
            image_size=32,
            dot_radius=0.15,
            noise=0.0,
            rng=np.random.default_rng(8),
        )
    assert "at most 6 dots fit" in str(raised.value), str(raised.value)


def test_training_set_rejects_unplaceable_design():
    # The design itself rejects this; model_construct skips that to test the renderer's own check.
    design = DotsDataset.model_construct(
        family="dots",
        counts=[2, 12],
        image_size=64,
        dot_radius=0.12,
        noise=0.03,
        weights=None,
        training_images=None,
    )
    with pytest.raises(ValueError, match=r"counts \[12\] do not fit.*at most 10 dots fit"):
        DotsTrainingSet(design, seed=0)


def test_check_counts_fit_accepts_default_design():
    check_counts_fit(counts=list(range(1, 17)), image_size=32, dot_radius=0.08)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"counts": np.array([17])}, "counts must lie in 0..16"),
        ({"noise": -0.1}, "noise must be at least 0"),
        ({"dot_radius": 0.6}, r"dot_radius must lie in \(0, 0.5\)"),
        ({"counts": np.ones((2, 2), dtype=np.int64)}, "counts must be one-dimensional"),
    ],
)
def test_render_rejects_invalid_arguments(arguments, message):
    call = {"counts": np.array([1]), "image_size": 32, "dot_radius": 0.08, "noise": 0.0}
    call.update(arguments)
    with pytest.raises(ValueError, match=message):
        render_counts(**call, rng=np.random.default_rng(0))


def test_fixed_training_set_reuses_its_images():
    design = DotsDataset(counts=[1, 2, 3], image_size=32, training_images=64)
    data = DotsTrainingSet(design, seed=9)
    assert data.fixed is not None, "training_images is set, so the set must be fixed"
    fixed_images = data.fixed.images.reshape(64, -1)
    for _ in range(3):
        batch = data.batch(32)
        assert batch.images.shape == (32, 32, 32, 3), f"batch shape {batch.images.shape}"
        # Each batch image equals exactly one image of the fixed set, with its count.
        matches = (batch.images.reshape(32, 1, -1) == fixed_images[None]).all(axis=2)
        assert (matches.sum(axis=1) >= 1).all(), "a batch image is not in the fixed set"
        rows = matches.argmax(axis=1)
        assert np.array_equal(batch.counts, data.fixed.counts[rows]), "counts do not match"


def test_fixed_training_set_is_deterministic_for_a_seed():
    design = DotsDataset(counts=[1, 2, 3], image_size=32, training_images=64)
    first, second = DotsTrainingSet(design, seed=9), DotsTrainingSet(design, seed=9)
    assert first.fixed is not None and second.fixed is not None
    assert np.array_equal(first.fixed.images, second.fixed.images), "fixed sets differ"
    assert np.array_equal(first.batch(16).images, second.batch(16).images), "batches differ"


def test_fresh_training_set_renders_new_images():
    design = DotsDataset(counts=[1, 2, 3], image_size=32)
    data = DotsTrainingSet(design, seed=10)
    assert data.fixed is None, "training_images is unset, so batches must be fresh"
    first, second = data.batch(16), data.batch(16)
    repeats = (first.images.reshape(16, 1, -1) == second.images.reshape(1, 16, -1)).all(axis=2)
    assert not repeats.any(), "a fresh batch repeated an image of the previous batch"


def test_reference_counts_of_fixed_set_are_its_own():
    design = DotsDataset(counts=[1, 5], image_size=32, training_images=100)
    data = DotsTrainingSet(design, seed=11)
    assert data.fixed is not None
    assert np.array_equal(data.reference_counts(40), data.fixed.counts[:40]), "first 40 differ"
    longer = data.reference_counts(250)
    assert longer.shape == (250,), f"shape {longer.shape}"
    assert np.array_equal(longer[:100], data.fixed.counts), "the whole set must come first"
    assert np.array_equal(longer[100:200], data.fixed.counts), "then the set repeats"


def test_fresh_reference_counts_follow_weights():
    design = DotsDataset(counts=[2, 4], weights=[3, 1], image_size=32)
    reference = DotsTrainingSet(design, seed=12).reference_counts(8000)
    assert reference.shape == (8000,), f"shape {reference.shape}"
    share = (reference == 2).mean()
    assert abs(share - 0.75) < 0.02, f"share of count 2 is {share:.3f}, expected 0.75"


def test_reference_counts_leave_batches_unchanged():
    design = DotsDataset(counts=[2, 4], weights=[3, 1], image_size=32)
    data, twin = DotsTrainingSet(design, seed=12), DotsTrainingSet(design, seed=12)
    data.reference_counts(500)
    assert np.array_equal(data.batch(8).images, twin.batch(8).images), (
        "drawing reference counts changed the training batches"
    )


# Radius modes, colour modes and spacing


def test_default_design_renders_pinned_images():
    # SHA-256 of this noise-free render, recorded when dot placement last changed (grid of
    # live cells, restarts several at a time). A stored study renders its training images
    # again from its seed, so a change here gives older studies other images of the same
    # features.
    design = DotsDataset(counts=[1, 4, 9, 16], image_size=32, noise=0.0)
    batch = render_dots(design, 64, np.random.default_rng(0))
    digest = hashlib.sha256(batch.images.tobytes()).hexdigest()
    assert digest == "ff4097d54a81c3e4ac31769628f96b82947252066df94b44bffcd01a231e4ad1", (
        "the default design no longer renders the images it rendered before"
    )
    assert (batch.mean_radii == 0.08).all(), "fixed radius: every mean radius is dot_radius"


def test_constant_area_keeps_total_ink_constant():
    design = DotsDataset(
        counts=[1, 2, 4, 8, 12],
        image_size=64,
        noise=0.0,
        radius_mode="constant_area",
        dot_radius=0.15,
        colour_mode="one",
        colours=["#000000"],
    )
    batch = render_dots(design, 400, np.random.default_rng(20))
    expected_radii = 0.15 / np.sqrt(batch.counts)
    np.testing.assert_allclose(batch.mean_radii, expected_radii, rtol=1e-12)
    # Black dots: the summed darkness of an image is its dot area in pixels. The ramp
    # clip(r + 0.5 - distance, 0, 1) covers pi * (r^2 + 1/12) pixels per dot.
    ink = (1.0 - batch.images).mean(axis=3).sum(axis=(1, 2))
    for count in design.counts:
        radius = 0.15 * 64 / np.sqrt(count)
        expected_area = count * np.pi * (radius**2 + 1 / 12)
        area = ink[batch.counts == count]
        assert np.abs(area / expected_area - 1).max() < 0.01, (
            f"{count} dots cover {area.min():.1f}-{area.max():.1f} px, not {expected_area:.1f}"
        )


def test_radius_range_draws_uniform_radii():
    layout = DotLayout(image_size=64, radius_mode="range", radius_range=(0.05, 0.12))
    counts = np.full(2000, 6)
    radii = layout.radii(counts, np.random.default_rng(21))
    assert isinstance(radii, np.ndarray) and radii.shape == (2000, 6), "one radius per dot"
    drawn = radii.reshape(-1) / 64
    assert drawn.min() >= 0.05 and drawn.max() <= 0.12, f"{drawn.min()}-{drawn.max()}"
    p_value = stats.kstest(drawn, stats.uniform(0.05, 0.07).cdf).pvalue
    assert p_value > 1e-3, f"radii are not uniform on 0.05-0.12 (p = {p_value:.2g})"


def test_radius_range_mean_radii_match_drawn_dots():
    design = DotsDataset(
        counts=[1, 5, 9], image_size=64, radius_mode="range", radius_range=(0.05, 0.1), noise=0.0
    )
    batch = render_dots(design, 300, np.random.default_rng(22))
    assert (batch.mean_radii >= 0.05).all() and (batch.mean_radii <= 0.1).all()
    one_dot = batch.counts == 1
    # A single dot's radius, re-derived from its pixels: area over pi.
    ink = (1.0 - batch.images[one_dot]).max(axis=3)
    for image_ink, radius in zip(ink, batch.mean_radii[one_dot], strict=True):
        interior = image_ink >= image_ink.max() - 1e-6
        covered = (image_ink / image_ink.max()).sum()
        measured = np.sqrt(covered / np.pi) / 64
        assert abs(measured - radius) < 0.003, f"radius {radius:.4f} drawn, {measured:.4f} seen"
        assert interior.any()


@pytest.mark.parametrize("spacing", [0.5, 1.5])
def test_spacing_kept_between_dots_of_any_radii(spacing):
    image_size = 64
    layout = DotLayout(
        image_size=image_size, radius_mode="range", radius_range=(0.04, 0.09), min_spacing=spacing
    )
    counts = np.full(300, 8)
    rng = np.random.default_rng(23)
    radii = layout.radii(counts, rng)
    assert isinstance(radii, np.ndarray)
    centres = place_dots(counts, image_size=image_size, radius=radii, rng=rng, min_spacing=spacing)
    distance = np.linalg.norm(centres[:, :, None] - centres[:, None, :], axis=-1)
    mean_radius = (radii[:, :, None] + radii[:, None, :]) / 2
    gap = distance - 2 * mean_radius  # between the edges
    gap[:, np.arange(8), np.arange(8)] = np.inf
    assert (gap > spacing * mean_radius).all(), (
        f"a gap of {(gap / mean_radius).min():.3f} radii, below {spacing}"
    )
    assert (centres >= radii[:, :, None]).all(), "a dot pokes out of the top or left"
    assert (centres <= image_size - radii[:, :, None]).all(), "a dot pokes out of the bottom"


def test_one_colour_paints_every_dot():
    design = DotsDataset(
        counts=[3, 7], image_size=64, noise=0.0, colour_mode="one", colours=["#1f77b4"]
    )
    batch = render_dots(design, 40, np.random.default_rng(24))
    expected = np.array([31, 119, 180], dtype=np.float32) / 255
    for index, image in enumerate(batch.images):
        colours = np.array(list(interior_colours(image)))
        assert len(colours) == 1, f"image {index}: {len(colours)} interior colours, expected 1"
        np.testing.assert_allclose(colours[0], expected, atol=1e-6)


def test_palette_colours_drawn_per_dot():
    palette = ["#d62728", "#2ca02c", "#9467bd"]
    design = DotsDataset(
        counts=[6], image_size=64, noise=0.0, colour_mode="palette", colours=palette
    )
    batch = render_dots(design, 200, np.random.default_rng(25))
    # Interior pixels are 1 - (1 - colour) in float32, so colours match to 5 decimals.
    expected = {tuple(np.round(rgb, 5)) for rgb in design.rgb_colours() or []}
    seen: set[tuple[float, ...]] = set()
    mixed = 0
    for image in batch.images:
        colours = {tuple(np.round(colour, 5)) for colour in interior_colours(image)}
        assert colours <= expected, f"colours {colours - expected} are not in the palette"
        seen |= colours
        mixed += len(colours) > 1
    assert seen == expected, "every palette colour should appear in 200 images of 6 dots"
    assert mixed > 190, f"only {mixed} of 200 images mix colours: colours are not drawn per dot"


def test_mode_renders_are_deterministic():
    design = DotsDataset(
        counts=[2, 5],
        image_size=64,
        radius_mode="range",
        radius_range=(0.05, 0.1),
        colour_mode="palette",
        colours=["#000000", "#ff7f0e"],
    )
    first = render_dots(design, 200, np.random.default_rng(26))
    second = render_dots(design, 200, np.random.default_rng(26))
    assert np.array_equal(first.images, second.images), "images differ for the same seed"
    assert np.array_equal(first.mean_radii, second.mean_radii), "radii differ for the same seed"


def test_largest_count_that_fits_per_mode():
    fixed_large = largest_count_that_fits(image_size=64, dot_radius=0.15)
    fixed_small = largest_count_that_fits(image_size=64, dot_radius=0.1)
    ranged = largest_count_that_fits(image_size=64, radius_mode="range", radius_range=(0.1, 0.15))
    assert fixed_large <= ranged <= fixed_small, (
        f"radii 0.1-0.15 fit {ranged} dots, outside {fixed_large} (0.15) to {fixed_small} (0.1)"
    )
    spaced = largest_count_that_fits(image_size=64, dot_radius=0.1, min_spacing=1.0)
    assert spaced < fixed_small, f"wider spacing fits {spaced} dots, not fewer than {fixed_small}"
    constant = largest_count_that_fits(image_size=64, radius_mode="constant_area", dot_radius=0.15)
    assert constant == 16, f"constant area of one dot of 0.15 fits up to {constant} dots"


def test_constant_area_fit_message_lists_counts_that_fit():
    with pytest.raises(ValueError) as raised:
        check_counts_fit(
            counts=[16],
            image_size=64,
            radius_mode="constant_area",
            dot_radius=0.11,
            reference_count=16,
        )
    message = str(raised.value)
    assert message.startswith("counts [16] do not fit with constant-area radii"), message
    assert "the largest count that fits is" in message, message


def test_fixed_training_set_keeps_mean_radii():
    design = DotsDataset(
        counts=[1, 4],
        image_size=64,
        radius_mode="range",
        radius_range=(0.05, 0.1),
        training_images=64,
    )
    data = DotsTrainingSet(design, seed=27)
    assert data.fixed is not None
    batch = data.batch(32)
    matches = (batch.images.reshape(32, 1, -1) == data.fixed.images.reshape(1, 64, -1)).all(axis=2)
    rows = matches.argmax(axis=1)
    assert np.array_equal(batch.mean_radii, data.fixed.mean_radii[rows]), "radii do not match"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"radius_mode": "range"}, r"radius_range must be \(smaller, larger\)"),
        ({"radius_mode": "range", "radius_range": (0.1, 0.6)}, "radius_range must lie below 0.5"),
        ({"radius_mode": "size"}, "radius_mode must be fixed, constant_area or range"),
        ({"min_spacing": -1.0}, "min_spacing must be at least 0"),
        ({"colours": [(0.0, 0.0, 1.5)]}, r"colour channels must lie in \[0, 1\]"),
        ({"colours": [(0.0, 0.0)]}, "colours must be a list of RGB triples"),
        (
            {"radius_mode": "constant_area", "dot_radius": 0.3, "reference_count": 4},
            "not below 0.5 of the image width",
        ),
    ],
)
def test_render_rejects_invalid_modes(arguments, message):
    call = {"counts": np.array([1]), "image_size": 32, "dot_radius": 0.08, "noise": 0.0}
    call.update(arguments)
    with pytest.raises(ValueError, match=message):
        render_counts(**call, rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    ("arguments", "digest"),
    [
        (
            {
                "counts": [14] * 128 + [1] * 128 + [1, 7, 14] * 43 + [3, 9],
                "image_size": 64,
                "dot_radius": 0.15,
                "radius_mode": "constant_area",
                "seed": 41,
            },
            "0e50607709c47201284e58b6f8ca1e50521b05536e95848bd4e2734f36b86884",
        ),
        (
            {
                "counts": [3] * 128 + [1] * 200,
                "image_size": 32,
                "dot_radius": 0.08,
                "radius_mode": "range",
                "radius_range": (0.08, 0.2),
                "colours": [(0.0, 0.0, 0.0), (0.5, 0.2, 0.9)],
                "min_spacing": 0.5,
                "seed": 42,
            },
            "f7439b01e1d4795e5ad21a65da734a090cbc2bcbe6167d8006ec7b01a0dc4631",
        ),
        (
            {
                "counts": [8] * 256,
                "image_size": 64,
                "dot_radius": 0.08,
                "radius_mode": "range",
                "radius_range": (0.02, 0.12),
                "seed": 44,
            },
            "7fbc02f1f09e992d7542941e967423a2258b57c0a4289fe4471c0842dbbd7939",
        ),
    ],
)
def test_mixed_radius_chunks_render_as_before(arguments, digest):
    # SHA-256 of noisy renders, recorded when the noise (a table of normal quantiles) and
    # dot placement last changed. The drawing is older: it matched the renderer that drew
    # each chunk of 128 images slot by slot, in windows sized for the chunk's largest dot.
    # In the first case the
    # first chunk has only small dots and the second only large ones, and pixel offsets round
    # differently with the window's corner. In the third, small and large dots of one image
    # reach the same pixels, whose value rounds differently when their inks come in another
    # order than slot by slot.
    arguments = dict(arguments)
    rng = np.random.default_rng(arguments.pop("seed"))
    images = render_counts(np.array(arguments.pop("counts")), noise=0.03, rng=rng, **arguments)
    assert hashlib.sha256(images.tobytes()).hexdigest() == digest, (
        "these varied radii no longer render the images that they rendered before"
    )


def test_fit_message_offers_spacing_only_above_default():
    with pytest.raises(ValueError) as default_spacing:
        check_counts_fit(counts=[16], image_size=64, dot_radius=0.15)
    assert "min_spacing" not in str(default_spacing.value), (
        "the default spacing is the smallest allowed, so the message must not suggest less"
    )
    with pytest.raises(ValueError) as wide_spacing:
        check_counts_fit(counts=[16], image_size=64, dot_radius=0.15, min_spacing=1.0)
    assert "a smaller min_spacing" in str(wide_spacing.value)


def test_fit_message_counts_one_dot():
    with pytest.raises(ValueError, match="at most 1 dot fits at this radius"):
        check_counts_fit(counts=[2], image_size=64, dot_radius=0.3)
