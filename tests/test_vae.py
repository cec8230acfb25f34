from __future__ import annotations

import math

import pytest
import torch

from biaslab.design import RunSpec
from biaslab.models.base import build_model
from biaslab.models.vae import ConvVae, level_channels

CPU = torch.device("cpu")


def make_spec(image_size: int = 32, z_dim: int = 8, beta: float = 1.0) -> RunSpec:
    return RunSpec.model_validate(
        {
            "dataset": {"family": "dots", "counts": [2], "image_size": image_size},
            "model": {"kind": "vae", "z_dim": z_dim, "beta": beta},
            "training": {"steps": 10, "snapshot_every": 10, "learning_rate": 1e-3},
        }
    )


def make_vae(image_size: int = 32, z_dim: int = 8, beta: float = 1.0, seed: int = 0) -> ConvVae:
    torch.manual_seed(seed)
    model = build_model(make_spec(image_size, z_dim, beta), CPU)
    assert isinstance(model, ConvVae)
    return model


def square_images(count: int, image_size: int, seed: int = 0) -> torch.Tensor:
    """White (B, 3, H, W) images, each with one dark square at a random place."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.ones(count, 3, image_size, image_size)
    side = image_size // 4
    corners = torch.randint(0, image_size - side, (count, 2), generator=generator)
    for image, (row, column) in zip(images, corners.tolist(), strict=True):
        image[:, row : row + side, column : column + side] = 0.1
    return images


@pytest.mark.parametrize("image_size", [32, 64])
def test_shapes_per_image_size(image_size: int) -> None:
    model = make_vae(image_size, z_dim=8)
    images = square_images(5, image_size)

    mean, logvar = model.network.encode(images)
    logits = model.network.decode(model.network.reparameterize(mean, logvar))
    samples = model.sample(7)

    assert mean.shape == (5, 8)
    assert logvar.shape == (5, 8)
    assert logits.shape == (5, 3, image_size, image_size)
    assert samples.shape == (7, 3, image_size, image_size)


def test_level_channels_reach_4x4() -> None:
    assert level_channels(32) == [32, 64, 128]
    assert level_channels(64) == [32, 64, 128, 256]
    with pytest.raises(ValueError, match="image_size 48"):
        level_channels(48)


def test_build_model_uses_spec() -> None:
    model = make_vae(64, z_dim=12, beta=2.5)

    assert model.z_dim == 12
    assert model.beta == 2.5
    assert model.image_size == 64
    assert model.optimizer.param_groups[0]["lr"] == 1e-3


def test_training_step_terms_finite() -> None:
    model = make_vae(beta=2.0)

    terms = model.training_step(square_images(8, 32))

    assert set(terms) == {"loss", "reconstruction", "kl"}
    for name, value in terms.items():
        assert value.dim() == 0, name
        assert not value.requires_grad, name
        assert math.isfinite(value.item()), name
    # The reconstruction of a 32x32x3 image costs about 3072 * ln 2 nats at the start.
    assert 1000 < terms["reconstruction"].item() < 5000
    assert terms["kl"].item() >= 0
    expected = terms["reconstruction"] + 2.0 * terms["kl"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_loss_decreases_on_fixed_set() -> None:
    model = make_vae(z_dim=8)
    images = square_images(8, 32)

    losses = [model.training_step(images)["loss"].item() for _ in range(40)]

    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, f"mean loss went from {first:.1f} to only {last:.1f}"


def test_same_seed_same_losses() -> None:
    images = square_images(8, 32)
    runs = []
    for _ in range(2):
        model = make_vae(seed=3)
        runs.append([model.training_step(images)["loss"].item() for _ in range(5)])

    assert runs[0] == runs[1]


def test_sample_range_mode_and_generator() -> None:
    model = make_vae()
    model.train()

    first = model.sample(6, torch.Generator().manual_seed(5))
    second = model.sample(6, torch.Generator().manual_seed(5))

    assert model.network.training, "sample() must restore training mode"
    assert torch.equal(first, second)
    assert first.min().item() >= 0.0
    assert first.max().item() <= 1.0


def test_state_dict_round_trip() -> None:
    model = make_vae(seed=1)
    images = square_images(8, 32)
    for _ in range(3):
        model.training_step(images)

    restored = make_vae(seed=2)
    restored.load_state_dict(model.state_dict())

    expected = model.sample(4, torch.Generator().manual_seed(0))
    actual = restored.sample(4, torch.Generator().manual_seed(0))
    assert torch.equal(expected, actual)
    adam_steps = [state["step"].item() for state in restored.optimizer.state.values()]
    assert adam_steps and all(step == 3 for step in adam_steps)
