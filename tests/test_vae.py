from __future__ import annotations

import math

import pytest
import torch

from biaslab.design import RunSpec
from biaslab.models.architectures import level_channels
from biaslab.models.base import build_model
from biaslab.models.vae import Vae, VaeNetwork

CPU = torch.device("cpu")


def make_spec(
    image_size: int = 32,
    z_dim: int = 8,
    beta: float = 1.0,
    architecture: str = "conv",
    kl_warmup_steps: int = 0,
) -> RunSpec:
    return RunSpec.model_validate(
        {
            "dataset": {"family": "dots", "counts": [2], "image_size": image_size},
            "model": {
                "kind": "vae",
                "architecture": architecture,
                "z_dim": z_dim,
                "beta": beta,
                "kl_warmup_steps": kl_warmup_steps,
            },
            "training": {"steps": 10, "snapshot_every": 10, "learning_rate": 1e-3},
        }
    )


def make_vae(
    image_size: int = 32,
    z_dim: int = 8,
    beta: float = 1.0,
    seed: int = 0,
    kl_warmup_steps: int = 0,
) -> Vae:
    torch.manual_seed(seed)
    model = build_model(make_spec(image_size, z_dim, beta, kl_warmup_steps=kl_warmup_steps), CPU)
    assert isinstance(model, Vae)
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
    assert level_channels("conv", 32) == [32, 64, 128]
    assert level_channels("conv", 64) == [32, 64, 128, 256]
    assert level_channels("conv_small", 32) == [22, 44, 88]
    assert level_channels("conv_large", 64) == [72, 144, 288, 576]
    with pytest.raises(ValueError, match="image_size 48"):
        level_channels("conv", 48)


def test_conv_network_keeps_its_layers() -> None:
    # The conv VAE had these layers, names and 529,795 parameters (z 32, 32x32)
    # before the other architectures existed; its runs must stay comparable.
    network = VaeNetwork("conv", 32, 32)
    shapes = {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}

    assert sum(tensor.numel() for tensor in network.parameters()) == 529_795
    assert shapes == {
        "encoder.0.weight": (32, 3, 4, 4),
        "encoder.0.bias": (32,),
        "encoder.2.weight": (64, 32, 4, 4),
        "encoder.2.bias": (64,),
        "encoder.4.weight": (128, 64, 4, 4),
        "encoder.4.bias": (128,),
        "to_mean.weight": (32, 2048),
        "to_mean.bias": (32,),
        "to_logvar.weight": (32, 2048),
        "to_logvar.bias": (32,),
        "decoder.0.weight": (2048, 32),
        "decoder.0.bias": (2048,),
        "decoder.3.weight": (128, 64, 4, 4),
        "decoder.3.bias": (64,),
        "decoder.5.weight": (64, 32, 4, 4),
        "decoder.5.bias": (32,),
        "decoder.7.weight": (32, 3, 4, 4),
        "decoder.7.bias": (3,),
    }


def test_build_model_uses_spec() -> None:
    model = make_vae(64, z_dim=12, beta=2.5)

    assert model.z_dim == 12
    assert model.beta == 2.5
    assert model.image_size == 64
    assert model.optimizer.learning_rate == 1e-3
    assert model.optimizer.optimizer.param_groups[0]["betas"] == (0.9, 0.999)


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


def test_kl_weight_rises_to_beta() -> None:
    model = make_vae(beta=2.0, kl_warmup_steps=4)
    images = square_images(8, 32)

    weights = []
    for _ in range(6):
        weight = model.kl_weight
        terms = model.training_step(images)
        weights.append(weight)
        expected = terms["reconstruction"] + weight * terms["kl"]
        assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)

    assert weights == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]


def test_kl_warmup_resumes_from_state() -> None:
    model = make_vae(beta=1.0, kl_warmup_steps=10)
    images = square_images(4, 32)
    for _ in range(3):
        model.training_step(images)

    restored = make_vae(beta=1.0, kl_warmup_steps=10, seed=1)
    restored.load_state_dict(model.state_dict())

    assert restored.steps_done == 3
    assert restored.kl_weight == pytest.approx(0.4)


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
    adam_state = restored.optimizer.optimizer.state.values()
    adam_steps = [state["step"].item() for state in adam_state]
    assert adam_steps and all(step == 3 for step in adam_steps)
