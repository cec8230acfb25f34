from __future__ import annotations

import copy
import math

import pytest
import torch

from biaslab.design import PixelCnnModel, RunSpec
from biaslab.models import parameter_count
from biaslab.models.base import build_model
from biaslab.models.gated import GatedPixelCnn
from biaslab.models.logistic import (
    channel_log_probs,
    mixture_log_prob,
    params_per_pixel,
    sample_mixture,
)
from biaslab.models.made import MadeNetwork, hidden_degrees
from biaslab.models.pixelcnn import PixelCnn, to_pixel_scale

CPU = torch.device("cpu")
ARCHITECTURES = ["fc", "conv_small", "conv", "conv_large"]
# 256 bin centres in [-1, 1], in float64 for exact normalization checks.
LEVELS = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0


def make_spec(
    architecture: str = "conv_small", image_size: int = 32, components: int = 3
) -> RunSpec:
    return RunSpec.model_validate(
        {
            "dataset": {"family": "dots", "counts": [2], "image_size": image_size},
            "model": {
                "kind": "pixelcnn",
                "architecture": architecture,
                "mixture_components": components,
            },
            "training": {"steps": 10, "snapshot_every": 10, "learning_rate": 1e-3},
        }
    )


def make_pixelcnn(
    architecture: str = "conv_small", image_size: int = 32, components: int = 3, seed: int = 0
) -> PixelCnn:
    torch.manual_seed(seed)
    model = build_model(make_spec(architecture, image_size, components), CPU)
    assert isinstance(model, PixelCnn)
    return model


def dot_images(count: int, image_size: int, seed: int = 0) -> torch.Tensor:
    """White (B, 3, H, W) images, each with one coloured square at a random place."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.ones(count, 3, image_size, image_size)
    side = image_size // 8
    corners = torch.randint(0, image_size - side, (count, 2), generator=generator)
    colours = torch.rand(count, 3, generator=generator) * 0.9
    for image, (row, column), colour in zip(images, corners.tolist(), colours, strict=True):
        image[:, row : row + side, column : column + side] = colour[:, None, None]
    return images


def double(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def random_params(components: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    params = torch.randn(1, params_per_pixel(components), *shape, generator=generator)
    return params.double()


def test_channel_bins_sum_to_one() -> None:
    for mean, log_scale in [(0.0, -2.0), (-0.98, -5.0), (0.7, 1.0), (1.4, -3.0)]:
        log_probs = channel_log_probs(LEVELS, double(mean), double(log_scale))

        assert log_probs.exp().sum().item() == pytest.approx(1.0, abs=1e-6), (mean, log_scale)


def test_mixture_conditionals_sum_to_red_marginal() -> None:
    # Summing p(R, G, B) over all 256^2 greens and blues must leave p(R), the
    # mixture of the red channels alone. With the red bins summing to 1 (the
    # test above), the 256^3 colours sum to 1.
    components = 3
    params = random_params(components, shape=(1, 1))
    logits = params[0, :components, 0, 0]
    means_r = params[0, components : 2 * components, 0, 0]
    log_scales_r = params[0, 4 * components : 5 * components, 0, 0].clamp(min=-7)
    green, blue = torch.meshgrid(LEVELS, LEVELS, indexing="ij")
    for red in LEVELS[[0, 77, 128, 200, 255]].tolist():
        x = torch.stack([torch.full_like(green, red), green, blue])  # (3, 256, 256)
        x = x.reshape(3, -1).T[:, :, None, None]  # (65536, 3, 1, 1)
        log_p = mixture_log_prob(x, params.expand(x.shape[0], -1, -1, -1), components)

        red_probs = channel_log_probs(double(red), means_r, log_scales_r).exp()
        marginal = (torch.softmax(logits, dim=0) * red_probs).sum().item()
        assert log_p.exp().sum().item() == pytest.approx(marginal, rel=1e-6, abs=1e-12), red


def test_mixture_log_prob_matches_one_component() -> None:
    # With one component the joint is p(R) p(G | R) p(B | R, G), checked by hand.
    params = random_params(components=1, shape=(1, 1), seed=4)
    x = LEVELS[[102, 178, 255]][None, :, None, None]  # about -0.2, 0.4 and 1.0
    _, mean_r, mean_g, mean_b, log_r, log_g, log_b, a, b, c = params.flatten().tolist()
    a, b, c = math.tanh(a), math.tanh(b), math.tanh(c)
    red, green, blue = x.flatten().tolist()

    def channel(value: float, mean: float, log_scale: float) -> float:
        return channel_log_probs(double(value), double(mean), double(log_scale)).item()

    expected = (
        channel(red, mean_r, log_r)
        + channel(green, mean_g + a * red, log_g)
        + channel(blue, mean_b + b * red + c * green, log_b)
    )
    assert mixture_log_prob(x, params, 1).item() == pytest.approx(expected, abs=1e-9)


def test_samples_follow_mixture() -> None:
    # One sharp component at red 0.5: the draws land on the bin centres next to it.
    params = torch.zeros(2000, params_per_pixel(1), 1, 1)
    params[:, 1:4] = torch.tensor([0.5, -0.5, 0.0])[:, None, None]  # means R, G, B
    params[:, 4:7] = -4.0  # log-scales
    samples = sample_mixture(params, 1, torch.Generator().manual_seed(0))

    levels = (samples + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert samples[:, 0].mean().item() == pytest.approx(0.5, abs=0.01)
    assert samples[:, 1].mean().item() == pytest.approx(-0.5, abs=0.01)
    assert (samples[:, 0] - 0.5).abs().max().item() < 0.2


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_output_ignores_current_and_later_pixels(architecture: str) -> None:
    model = make_pixelcnn(architecture, image_size=32)
    x = to_pixel_scale(torch.rand(1, 3, 32, 32)).requires_grad_(True)
    size = 32
    for i, j in [(0, 0), (0, 7), (5, 0), (8, 8), (20, 31), (31, 31)]:
        x.grad = None
        model.network(x)[0, :, i, j].sum().backward()
        assert x.grad is not None
        influence = x.grad[0].abs().sum(dim=0).flatten()  # (H * W,), raster order
        pixel = i * size + j

        assert influence[pixel:].max().item() == 0.0, f"({i}, {j}) sees itself or a later pixel"
        if architecture == "fc":
            # Dead ReLUs make a MADE's gradients sparse; its masks are checked below.
            continue
        if j > 0:
            assert influence[pixel - 1].item() > 0, f"({i}, {j}) ignores its left neighbour"
        if i > 0:
            assert influence[pixel - size].item() > 0, f"({i}, {j}) ignores the pixel above"
        if i > 0 and j + 1 < size:
            # The classic blind spot of masked convolutions is above and to the right.
            assert influence[pixel - size + 1].item() > 0, f"({i}, {j}) has a blind spot"


def test_made_masks_connect_recent_pixels() -> None:
    network = MadeNetwork(32, hidden=512, out_channels=10)
    pixels = 32 * 32
    # Paths from each input unit to each output feature through both hidden layers.
    paths = (
        network.output_layer.mask @ network.hidden_layer.mask @ network.input_layer.mask
    )  # (P * F, 3P)
    seen = paths.reshape(pixels, -1, pixels, 3).sum(dim=(1, 3)) > 0  # (output pixel, input pixel)

    assert not seen.triu().any(), "a pixel sees itself or a later pixel"
    for pixel in range(1, pixels):
        latest = seen[pixel].nonzero().max().item()
        assert pixel - latest <= 2, f"pixel {pixel} sees only up to pixel {latest}"


@pytest.mark.parametrize("image_size, farthest_gap", [(32, 2), (64, 8)])
def test_made_hidden_degrees_gap(image_size: int, farthest_gap: int) -> None:
    pixels = image_size * image_size
    degrees = hidden_degrees(512, pixels)

    assert degrees.min().item() == 0
    assert degrees.max().item() < pixels - 1
    # Pixel p sees pixels up to the largest degree below p.
    assert torch.diff(degrees).max().item() == farthest_gap
    assert pixels - 1 - degrees.max().item() <= farthest_gap


def test_gated_receptive_field_reaches_far_rows() -> None:
    network = GatedPixelCnn(channels=8, layers=3, kernel_size=3, out_channels=10)
    x = torch.randn(1, 3, 16, 16, requires_grad=True)
    network(x)[0, :, 10, 5].sum().backward()
    assert x.grad is not None
    rows_seen = x.grad[0].abs().sum(dim=(0, 2)).nonzero().flatten().tolist()

    # Row 10 gets row 9 of the vertical stack, whose input layer and three
    # layers of 3x3 kernels each reach one more row up: rows 5 to 9.
    assert rows_seen == [5, 6, 7, 8, 9, 10]


@pytest.mark.parametrize(
    "network",
    [
        GatedPixelCnn(channels=8, layers=2, kernel_size=3, out_channels=20),
        GatedPixelCnn(channels=8, layers=3, kernel_size=5, out_channels=20),
        MadeNetwork(image_size=12, hidden=64, out_channels=20),
    ],
    ids=["gated_k3", "gated_k5", "made"],
)
def test_pixel_params_equal_full_pass(network: GatedPixelCnn | MadeNetwork) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 12, 12) * 2 - 1
    with torch.no_grad():
        full = network(x)  # (B, 10K, H, W)
        visited = []
        for i, j, params in network.pixel_params(x):
            visited.append((i, j))
            torch.testing.assert_close(params, full[:, :, i, j], atol=1e-5, rtol=1e-4)

    assert visited == [(i, j) for i in range(12) for j in range(12)]


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_training_steps_finite(architecture: str, image_size: int) -> None:
    model = make_pixelcnn(architecture, image_size)
    images = dot_images(2, image_size)

    terms = [model.training_step(images) for _ in range(2)]

    for step in terms:
        assert set(step) == {"loss", "nats_per_image"}
        for name, value in step.items():
            assert value.dim() == 0, name
            assert not value.requires_grad, name
            assert math.isfinite(value.item()), name
    dimensions = 3 * image_size * image_size
    bits = terms[0]["nats_per_image"].item() / (dimensions * math.log(2))
    assert terms[0]["loss"].item() == pytest.approx(bits, rel=1e-5)
    # Untrained, the model spreads mass over the 256 levels: a few bits per dimension.
    assert 1.0 < terms[0]["loss"].item() < 12.0


def test_loss_decreases_on_fixed_set() -> None:
    model = make_pixelcnn("conv_small")
    images = dot_images(8, 32)

    losses = [model.training_step(images)["loss"].item() for _ in range(30)]

    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.6 * first, f"bits per dimension went from {first:.2f} to only {last:.2f}"


@pytest.mark.parametrize("architecture", ["fc", "conv_small"])
def test_sample_shape_range_and_generator(architecture: str) -> None:
    model = make_pixelcnn(architecture, image_size=32)
    model.train()

    first = model.sample(3, torch.Generator().manual_seed(5))
    second = model.sample(3, torch.Generator().manual_seed(5))

    assert model.network.training, "sample() must restore training mode"
    assert first.shape == (3, 3, 32, 32)
    assert torch.equal(first, second)
    assert first.min().item() >= 0.0
    assert first.max().item() <= 1.0
    levels = first * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4), "samples are not 8-bit levels"


def test_resume_gives_identical_losses() -> None:
    images = dot_images(4, 32)
    model = make_pixelcnn(seed=1)
    for _ in range(2):
        model.training_step(images)
    # A deep copy, as a checkpoint file would be: state_dict() shares the live tensors.
    state = copy.deepcopy(model.state_dict())
    expected = [model.training_step(images)["loss"].item() for _ in range(2)]

    restored = make_pixelcnn(seed=2)
    restored.load_state_dict(state)
    actual = [restored.training_step(images)["loss"].item() for _ in range(2)]

    assert actual == expected


def test_parameter_ratios() -> None:
    for image_size in [32, 64]:
        counts = {
            architecture: parameter_count(model_config(architecture, 5), image_size)
            for architecture in ARCHITECTURES
        }

        assert 0.4 < counts["conv_small"] / counts["conv"] < 0.6, counts
        assert 3.5 < counts["conv_large"] / counts["conv"] < 4.5, counts


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_parameter_count_matches_network(architecture: str) -> None:
    for image_size in [32, 64]:
        model = make_pixelcnn(architecture, image_size, components=4)
        built = sum(parameter.numel() for parameter in model.network.parameters())

        assert parameter_count(model_config(architecture, 4), image_size) == built


def model_config(architecture: str, components: int) -> PixelCnnModel:
    return PixelCnnModel.model_validate(
        {"architecture": architecture, "mixture_components": components}
    )
