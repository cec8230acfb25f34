from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from biaslab.design import RunSpec
from biaslab.models.base import build_model
from biaslab.models.wgan_gp import WganGp, gradient_penalty

CPU = torch.device("cpu")


def make_spec(
    image_size: int = 32,
    critic_steps: int = 2,
    batch_size: int = 8,
    penalty: float = 10.0,
    adam_betas: tuple[float, float] | None = None,
) -> RunSpec:
    return RunSpec.model_validate(
        {
            "dataset": {"family": "dots", "counts": [2], "image_size": image_size},
            "model": {
                "kind": "wgan_gp",
                "z_dim": 16,
                "critic_steps": critic_steps,
                "gradient_penalty": penalty,
            },
            "training": {
                "steps": 10,
                "snapshot_every": 10,
                "batch_size": batch_size,
                "learning_rate": 1e-3,
                "adam_betas": adam_betas,
            },
        }
    )


def make_gan(seed: int = 0, **changes) -> WganGp:
    torch.manual_seed(seed)
    model = build_model(make_spec(**changes), CPU)
    assert isinstance(model, WganGp)
    return model


def square_images(count: int, image_size: int = 32) -> torch.Tensor:
    images = torch.ones(count, 3, image_size, image_size)
    images[:, :, 8:16, 8:16] = 0.0
    return images


def linear_critic(image_size: int, weight_norm: float) -> nn.Module:
    """A critic D(x) = w . x with ||w|| = weight_norm, so ||grad D|| = weight_norm everywhere."""
    linear = nn.Linear(3 * image_size * image_size, 1)
    with torch.no_grad():
        weight = torch.randn_like(linear.weight)
        linear.weight.copy_(weight / weight.norm() * weight_norm)
    return nn.Sequential(nn.Flatten(), linear)


@pytest.mark.parametrize(("weight_norm", "expected"), [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)])
def test_gradient_penalty_of_linear_critic(weight_norm: float, expected: float) -> None:
    critic = linear_critic(8, weight_norm)
    real = torch.rand(5, 3, 8, 8)
    fake = torch.rand(5, 3, 8, 8)

    penalty = gradient_penalty(critic, real, fake)

    assert penalty.item() == pytest.approx(expected, abs=1e-5)
    assert penalty.requires_grad, "the critic must be trained through the penalty"


def test_training_step_terms() -> None:
    model = make_gan()

    terms = model.training_step(square_images(8))

    assert set(terms) == {"loss", "critic", "generator", "wasserstein", "gradient_penalty"}
    for name, value in terms.items():
        assert value.dim() == 0, name
        assert not value.requires_grad, name
        assert math.isfinite(value.item()), name
    assert terms["loss"].item() == terms["critic"].item()
    # The critic loss is the mean over critic updates of -wasserstein + 10 * penalty.
    expected = -terms["wasserstein"] + 10.0 * terms["gradient_penalty"]
    assert terms["critic"].item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert terms["gradient_penalty"].item() >= 0


def test_critic_updates_per_generator_update() -> None:
    model = make_gan(critic_steps=3, batch_size=9)

    model.training_step(square_images(9))
    model.training_step(square_images(9))

    critic_steps = {s["step"].item() for s in model.critic_optimizer.optimizer.state.values()}
    generator_steps = {s["step"].item() for s in model.generator_optimizer.optimizer.state.values()}
    assert critic_steps == {6}
    assert generator_steps == {2}


def test_generator_step_leaves_critic_trainable() -> None:
    model = make_gan()

    model.training_step(square_images(8))

    assert all(parameter.requires_grad for parameter in model.critic.parameters())


def test_batch_smaller_than_critic_steps_rejected() -> None:
    with pytest.raises(ValueError, match="batch_size 2 is smaller than critic_steps 3"):
        make_gan(critic_steps=3, batch_size=2)


def test_adam_betas_default_and_override() -> None:
    default = make_gan()
    chosen = make_gan(adam_betas=(0.0, 0.99))

    assert default.critic_optimizer.optimizer.param_groups[0]["betas"] == (0.5, 0.9)
    assert default.generator_optimizer.optimizer.param_groups[0]["betas"] == (0.5, 0.9)
    assert chosen.critic_optimizer.optimizer.param_groups[0]["betas"] == (0.0, 0.99)
    assert chosen.generator_optimizer.optimizer.param_groups[0]["betas"] == (0.0, 0.99)


def test_critic_separates_real_from_fake() -> None:
    model = make_gan(seed=1)
    images = square_images(8)

    estimates = [model.training_step(images)["wasserstein"].item() for _ in range(15)]

    # A fresh generator draws grey noise, nothing like white images with a black
    # square, so a learning critic soon scores the real images higher.
    assert sum(estimates[-5:]) / 5 > 0.1, f"Wasserstein estimates: {estimates}"


def test_sample_range_mode_and_generator() -> None:
    model = make_gan()
    model.train()

    first = model.sample(6, torch.Generator().manual_seed(5))
    second = model.sample(6, torch.Generator().manual_seed(5))

    assert model.generator.training, "sample() must restore training mode"
    assert first.shape == (6, 3, 32, 32)
    assert torch.equal(first, second)
    assert first.min().item() >= 0.0
    assert first.max().item() <= 1.0


def test_critic_input_scale() -> None:
    model = make_gan()
    seen: list[torch.Tensor] = []
    model.critic.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))

    model.training_step(square_images(8))

    # The first critic call scores the real images: white becomes 1, black -1.
    real = seen[0]
    assert real.max().item() == 1.0
    assert real.min().item() == -1.0
    # Fakes, mixed images and the generator's batch stay on the same scale.
    assert len(seen) == 7, "2 critic updates of 3 calls each, then the generator's"
    assert all(x.min().item() >= -1.0 and x.max().item() <= 1.0 for x in seen)


def test_sample_maps_back_to_unit_range() -> None:
    model = make_gan()
    model.eval()

    samples = model.sample(4, torch.Generator().manual_seed(3))
    z = torch.randn(4, model.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = (model.generate(z) + 1) / 2

    torch.testing.assert_close(samples, expected, atol=1e-6, rtol=0)
