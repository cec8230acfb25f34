"""The pie probe: accuracy on renders, and NaN for images that are not readable pies."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from biaslab.datasets.pie import PALETTE, quantity_of_value, render_pies
from biaslab.design.pie import OFFSET_RANGE, RED_SHARE_RANGE, SIZE_RANGE, PieDataset
from biaslab.families.pie import RED_SHARE_FEATURE, PieFamily
from biaslab.images import to_uint8
from biaslab.probes.pie import read_pies

ACCURACY_IMAGES = 2000
# One bin of size or position, as a fraction of the half width.
BIN_WIDTH = 0.05


def render(values, *, image_size=64, colours=2, noise=0.0, seed=0):
    return render_pies(
        np.asarray(values, dtype=np.int64),
        image_size=image_size,
        colours=colours,
        noise=noise,
        random_rotation=True,
        rng=np.random.default_rng(seed),
    )


def paint_disc(size: int, centre: tuple[float, float], radius: float, colour) -> np.ndarray:
    """Return a white (size, size, 3) image with an anti-aliased disc (lengths in pixels)."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    coverage = np.clip(radius + 0.5 - np.hypot(ys - centre[0], xs - centre[1]), 0.0, 1.0)
    image = 1.0 - coverage[..., None] * (1.0 - np.asarray(colour, dtype=np.float64))
    return image.astype(np.float32)


def accuracy_batch(
    image_size: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ACCURACY_IMAGES pies with random values, a quarter each with 1 to 4 colours."""
    rng = np.random.default_rng(seed)
    values = rng.integers(1, 10, size=(ACCURACY_IMAGES, 4))
    colours = np.repeat(np.arange(1, 5), ACCURACY_IMAGES // 4)
    images = np.concatenate(
        [
            render(
                values[colours == count],
                image_size=image_size,
                colours=count,
                noise=noise,
                seed=seed + count,
            )
            for count in range(1, 5)
        ]
    )
    return images, values, colours


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_accuracy_on_renders(image_size, noise):
    images, values, colours = accuracy_batch(image_size, noise, seed=200 + image_size)
    reading = read_pies(images)

    size_error = np.abs(reading.size - quantity_of_value(values[:, 0], SIZE_RANGE))
    x_error = np.abs(reading.x - quantity_of_value(values[:, 1], OFFSET_RANGE))
    y_error = np.abs(reading.y - quantity_of_value(values[:, 2], OFFSET_RANGE))
    true_red = np.where(colours > 1, quantity_of_value(values[:, 3], RED_SHARE_RANGE), 0.0)
    red_error = np.abs(reading.red_share - true_red)

    # NaN compares False, so an unrecognized image counts as a miss.
    setting = f"{image_size}x{image_size}, noise {noise}"
    size_within = (size_error <= BIN_WIDTH).mean()
    position_within = ((x_error <= BIN_WIDTH) & (y_error <= BIN_WIDTH)).mean()
    red_within = (red_error <= 0.05).mean()
    colours_exact = (reading.colours == colours).mean()
    assert size_within >= 0.99, f"{setting}: size within one bin in {size_within:.4f}"
    assert position_within >= 0.99, f"{setting}: position within one bin in {position_within:.4f}"
    assert red_within >= 0.99, f"{setting}: red share within 0.05 in {red_within:.4f}"
    assert colours_exact >= 0.99, f"{setting}: colour count exact in {colours_exact:.4f}"


@pytest.mark.parametrize("image_size", [32, 64])
def test_template_red_shares_stay_in_own_half_bin(image_size):
    # The red-share bins are 0.05 wide, so a probe error above 0.025 moves a render into
    # the next half bin, such as 0.35 between the trained shares 0.3 and 0.4.
    design = PieDataset(image_size=image_size, values=[(5, 5, 5, 3), (5, 5, 5, 4), (5, 5, 5, 9)])
    family = PieFamily()
    batch = family.render(design, ACCURACY_IMAGES, np.random.default_rng(300 + image_size))
    probed = family.probe(batch.images, design)["red_share"]
    true_bins = RED_SHARE_FEATURE.bin_indices(batch.features["red_share"])
    own_bin = (RED_SHARE_FEATURE.bin_indices(probed) == true_bins).mean()
    assert own_bin >= 0.99, f"{image_size}x{image_size}: own red-share bin in {own_bin:.4f}"


def test_reading_has_one_float_per_image():
    images = render(np.full((5, 4), 5), image_size=32)
    reading = read_pies(images)
    for name in ("size", "x", "y", "red_share", "colours"):
        values = getattr(reading, name)
        assert values.shape == (5,), f"{name} shape {values.shape}"
        assert values.dtype == np.float64, f"{name} dtype {values.dtype}"


def test_uint8_input_reads_like_float():
    values = np.random.default_rng(1).integers(1, 10, size=(200, 4))
    images = render(values, noise=0.03, colours=3, seed=1)
    from_float = read_pies(images)
    from_uint8 = read_pies(to_uint8(images))
    assert np.allclose(from_float.size, from_uint8.size, atol=0.01)
    assert np.allclose(from_float.red_share, from_uint8.red_share, atol=0.01)
    assert np.array_equal(from_float.colours, from_uint8.colours)


@pytest.mark.parametrize("name", sorted(PALETTE))
def test_each_palette_colour_reads_as_itself(name):
    image = paint_disc(64, (32.0, 32.0), 20.0, PALETTE[name])
    reading = read_pies(image[None])
    assert reading.colours[0] == 1, f"{name}: {reading.colours[0]} colours"
    expected_red = 1.0 if name == "red" else 0.0
    assert reading.red_share[0] == pytest.approx(expected_red, abs=0.01), f"{name} red share"
    assert reading.size[0] == pytest.approx(20.0 / 32, abs=0.01)


def test_blank_image_unrecognized():
    reading = read_pies(np.ones((2, 32, 32, 3), dtype=np.float32))
    for name in ("size", "x", "y", "red_share", "colours"):
        assert np.isnan(getattr(reading, name)).all(), f"{name} read from a blank image"


def test_two_separate_discs_unrecognized():
    image = paint_disc(64, (32.0, 16.0), 10.0, PALETTE["red"])
    image = np.minimum(image, paint_disc(64, (32.0, 48.0), 10.0, PALETTE["blue"]))
    reading = read_pies(image[None])
    assert np.isnan(reading.size[0]), f"two discs read as one of size {reading.size[0]:.3f}"


def test_ellipse_unrecognized():
    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    inside = ((xs - 32) / 24) ** 2 + ((ys - 32) / 14) ** 2 <= 1
    image = np.ones((64, 64, 3), dtype=np.float32)
    image[inside] = PALETTE["red"]
    reading = read_pies(image[None])
    assert np.isnan(reading.size[0]), "an ellipse 1.7 times as long as wide read as a pie"


def test_ring_unrecognized():
    image = paint_disc(64, (32.0, 32.0), 22.0, PALETTE["red"])
    hole = paint_disc(64, (32.0, 32.0), 14.0, (1.0, 1.0, 1.0))
    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    image[np.hypot(ys - 32, xs - 32) < 14] = hole[np.hypot(ys - 32, xs - 32) < 14]
    reading = read_pies(image[None])
    assert np.isnan(reading.size[0]), "a ring read as a pie"


def test_disc_cut_by_border_unrecognized():
    image = paint_disc(64, (32.0, 58.0), 16.0, PALETTE["red"])
    reading = read_pies(image[None])
    assert np.isnan(reading.size[0]), "a disc running off the image read as a pie"


def test_tiny_speck_unrecognized():
    image = paint_disc(64, (32.0, 32.0), 3.0, PALETTE["red"])
    reading = read_pies(image[None])
    assert np.isnan(reading.size[0]), "a speck read as a pie"


def test_grey_disc_has_shape_but_no_colours():
    image = paint_disc(64, (30.0, 34.0), 18.0, (0.4, 0.4, 0.4))
    reading = read_pies(image[None])
    assert reading.size[0] == pytest.approx(18 / 32, abs=0.01), "the grey disc's size"
    assert reading.x[0] == pytest.approx(2 / 32, abs=0.01), "the grey disc's x"
    assert reading.y[0] == pytest.approx(-2 / 32, abs=0.01), "the grey disc's y"
    assert np.isnan(reading.red_share[0]), "a grey disc got a red share"
    assert np.isnan(reading.colours[0]), "a grey disc got a colour count"


def test_noise_only_image_unrecognized():
    rng = np.random.default_rng(3)
    images = rng.uniform(0.0, 1.0, size=(20, 32, 32, 3)).astype(np.float32)
    reading = read_pies(images)
    assert np.isnan(reading.size).all(), "uniform noise read as a pie"


def test_mixed_batch_keeps_every_image_in_order():
    good = render(np.array([[5, 5, 5, 5], [9, 1, 9, 1]]), image_size=32)
    blank = np.ones((1, 32, 32, 3), dtype=np.float32)
    batch = np.concatenate([good[:1], blank, good[1:]])
    reading = read_pies(batch)
    assert not np.isnan(reading.size[0])
    assert np.isnan(reading.size[1]), "the blank image in the middle was read"
    assert reading.size[2] == pytest.approx(0.8, abs=BIN_WIDTH)
    assert reading.x[2] == pytest.approx(-0.2, abs=BIN_WIDTH)


def test_blurred_renders_keep_size_and_position():
    # Generated samples are often blurry: a Gaussian blur of 1 px at 32x32 keeps the disc's
    # half-coverage contour, so size and position stay within one bin.
    rng = np.random.default_rng(4)
    values = rng.integers(1, 10, size=(500, 4))
    images = render(values, image_size=32, colours=3, noise=0.03, seed=4)
    blurred = ndimage.gaussian_filter(images, sigma=(0, 1.0, 1.0, 0))
    reading = read_pies(blurred)
    size_error = np.abs(reading.size - quantity_of_value(values[:, 0], SIZE_RANGE))
    red_error = np.abs(reading.red_share - quantity_of_value(values[:, 3], RED_SHARE_RANGE))
    assert (size_error <= BIN_WIDTH).mean() >= 0.99, "blur moved sizes by more than a bin"
    assert (red_error <= 0.05).mean() >= 0.99, "blur moved red shares by more than 0.05"


def test_rejects_batches_of_other_shapes():
    with pytest.raises(ValueError, match=r"shape \(N, H, W, 3\)"):
        read_pies(np.ones((2, 32, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="must be square, got 32x16"):
        read_pies(np.ones((2, 32, 16, 3), dtype=np.float32))


def test_reading_does_not_depend_on_batch():
    # 100 images of 64x64 span several chunks, summed on several threads where the machine
    # has several CPUs. Each image's reading must equal the reading of it alone.
    values = np.random.default_rng(5).integers(1, 10, size=(100, 4))
    images = render(values, noise=0.03, colours=4, seed=5)
    together = read_pies(images)
    for index in (0, 15, 16, 57, 99):
        alone = read_pies(images[index : index + 1])
        for name in ("size", "x", "y", "red_share", "colours"):
            assert getattr(alone, name)[0] == getattr(together, name)[index], (
                f"image {index}: {name} differs between its own batch and the batch of 100"
            )


def test_nan_pixels_off_the_disc_leave_reading():
    image = render(np.array([[5, 5, 5, 3]]), noise=0.03, colours=2, seed=6)
    clean = read_pies(image)
    spoiled = image.copy()
    spoiled[0, 0, 0, 1] = np.nan  # a corner pixel, far off the disc
    reading = read_pies(spoiled)
    for name in ("size", "x", "y", "red_share", "colours"):
        assert getattr(reading, name)[0] == pytest.approx(getattr(clean, name)[0], abs=1e-6), (
            f"one NaN pixel off the disc changed {name}"
        )


def test_empty_batch_reads_empty():
    reading = read_pies(np.ones((0, 32, 32, 3), dtype=np.float32))
    for name in ("size", "x", "y", "red_share", "colours"):
        assert getattr(reading, name).shape == (0,), f"{name} of an empty batch"
