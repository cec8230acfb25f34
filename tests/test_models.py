"""Behaviour every model kind shares: training at both sizes, samples, exact resume, sizes."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from biaslab.design import ARCHITECTURES, RunSpec, VaeModel, WganGpModel
from biaslab.models import parameter_count
from biaslab.models.base import GenerativeModel, build_model
from biaslab.models.optim import ScheduledAdam, learning_rate_factor
from biaslab.models.precision import ComputeMode

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parent.parent
# The kinds this file covers; PixelCNN and DDPM have test files of their own.
KINDS = ("vae", "wgan_gp")


def make_spec(kind: str, architecture: str, image_size: int = 32, **training) -> RunSpec:
    steps = training.pop("steps", 20)
    return RunSpec.model_validate(
        {
            "dataset": {"family": "dots", "counts": [2, 4], "image_size": image_size},
            "model": {"kind": kind, "architecture": architecture, "z_dim": 8},
            "training": {
                "steps": steps,
                "snapshot_every": steps,
                "batch_size": 4,
                "learning_rate": 1e-3,
                **training,
            },
        }
    )


def make_model(spec: RunSpec, seed: int = 0) -> GenerativeModel:
    torch.manual_seed(seed)
    return build_model(spec, CPU)


def dot_images(count: int, image_size: int, seed: int = 0) -> torch.Tensor:
    """(B, 3, H, W) white images with one dark disc each."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(count, 2, 1, 1, generator=generator) * image_size * 0.6 + image_size * 0.2
    rows = torch.arange(image_size).view(1, image_size, 1)
    columns = torch.arange(image_size).view(1, 1, image_size)
    inside = (rows - centres[:, 0]) ** 2 + (columns - centres[:, 1]) ** 2 < (image_size / 10) ** 2
    return torch.where(inside, 0.0, 1.0).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def as_floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: value.item() for name, value in terms.items()}


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("kind", KINDS)
def test_trains_and_samples(kind: str, architecture: str, image_size: int) -> None:
    model = make_model(make_spec(kind, architecture, image_size))
    images = dot_images(4, image_size)

    for step in range(2):
        terms = model.training_step(images)
        for name, value in terms.items():
            assert math.isfinite(value.item()), f"step {step + 1}: {name} is {value.item()}"
    samples = model.sample(3)

    assert "loss" in terms
    assert samples.shape == (3, 3, image_size, image_size)
    assert samples.dtype == torch.float32
    assert 0.0 <= samples.min().item() <= samples.max().item() <= 1.0


@pytest.mark.parametrize(
    ("kind", "architecture"), [("vae", "conv"), ("vae", "fc"), ("wgan_gp", "conv_small")]
)
def test_resume_repeats_next_losses(kind: str, architecture: str) -> None:
    spec = make_spec(kind, architecture, lr_schedule="cosine", warmup_steps=2)
    model = make_model(spec, seed=0)
    for step in range(3):
        model.training_step(dot_images(4, 32, seed=step))
    state = copy.deepcopy(model.state_dict())
    random_state = torch.get_rng_state()
    expected = [as_floats(model.training_step(dot_images(4, 32, seed=9 + i))) for i in range(3)]

    restored = make_model(spec, seed=1)
    restored.load_state_dict(state)
    torch.set_rng_state(random_state)
    actual = [as_floats(restored.training_step(dot_images(4, 32, seed=9 + i))) for i in range(3)]

    assert actual == expected


@pytest.mark.parametrize("kind", KINDS)
def test_learning_rate_follows_schedule(kind: str) -> None:
    spec = make_spec(kind, "conv_small", steps=10, lr_schedule="cosine", warmup_steps=4)
    model = make_model(spec)
    optimizers = [
        optimizer for optimizer in vars(model).values() if isinstance(optimizer, ScheduledAdam)
    ]

    rates = []
    for _ in range(6):
        rates.append([optimizer.learning_rate for optimizer in optimizers])
        model.training_step(dot_images(4, 32))

    assert optimizers, f"{kind} has no ScheduledAdam"
    for update, step_rates in enumerate(rates):
        expected = 1e-3 * learning_rate_factor(update, spec.training)
        assert step_rates == pytest.approx([expected] * len(optimizers)), f"update {update}"


def test_learning_rate_factor_shapes() -> None:
    constant = make_spec("vae", "conv", steps=10).training
    warm = make_spec("vae", "conv", steps=10, warmup_steps=4).training
    cosine = make_spec("vae", "conv", steps=10, lr_schedule="cosine", warmup_steps=2).training

    assert [learning_rate_factor(update, constant) for update in range(10)] == [1.0] * 10
    assert [learning_rate_factor(update, warm) for update in range(6)] == [
        0.25,
        0.5,
        0.75,
        1.0,
        1.0,
        1.0,
    ]
    cosine_factors = [learning_rate_factor(update, cosine) for update in range(10)]
    assert cosine_factors[:3] == [0.5, 1.0, 1.0]
    assert cosine_factors[6] == pytest.approx(0.5)
    assert cosine_factors[9] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert all(a > b for a, b in zip(cosine_factors[2:], cosine_factors[3:], strict=False))


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("kind", KINDS)
def test_parameter_count_matches_networks(kind: str, architecture: str, image_size: int) -> None:
    spec = make_spec(kind, architecture, image_size)
    # On the meta device the layers get shapes but no memory and no initialization.
    meta = torch.device("meta")
    with meta:
        model = build_model(spec, meta)
    modules = [module for module in vars(model).values() if isinstance(module, torch.nn.Module)]

    built = sum(parameter.numel() for module in modules for parameter in module.parameters())

    assert modules, f"{kind} keeps no nn.Module"
    assert parameter_count(spec.model, image_size) == built


# conv_small and conv_large must stay within 25% of half and of four times conv's
# parameters, at each model's default z_dim and at the published z_dim of 100.
HALF_RANGE = (0.375, 0.625)
FOUR_TIMES_RANGE = (3.0, 5.0)


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize(
    "design",
    [VaeModel(), VaeModel(z_dim=100), WganGpModel(), WganGpModel(z_dim=100)],
    ids=["vae", "vae-z100", "wgan_gp", "wgan_gp-z100"],
)
def test_size_ratios_to_conv(design: VaeModel | WganGpModel, image_size: int) -> None:
    def count(architecture: str) -> int:
        return parameter_count(design.model_copy(update={"architecture": architecture}), image_size)

    small = count("conv_small") / count("conv")
    large = count("conv_large") / count("conv")

    assert HALF_RANGE[0] <= small <= HALF_RANGE[1], f"conv_small is {small:.2f} of conv"
    assert FOUR_TIMES_RANGE[0] <= large <= FOUR_TIMES_RANGE[1], f"conv_large is {large:.2f} of conv"


def test_parameter_count_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from biaslab.design import VaeModel\n"
        "from biaslab.models import parameter_count\n"
        "import biaslab.presets\n"
        "print(parameter_count(VaeModel(), 32), 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["529795", "False"]


def test_cpu_compute_mode_is_plain() -> None:
    mode = ComputeMode(CPU)
    images = dot_images(2, 32)

    assert not mode.autocast_enabled
    assert not mode.channels_last
    assert mode.prepare_images(images) is images
    with mode.autocast():
        output = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    assert output.dtype == torch.float32


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"kind": "vae", "architecture": "resnet"}, "'fc', 'conv_small', 'conv' or 'conv_large'"),
        ({"kind": "vae", "z_dim": 1}, "greater than or equal to 2"),
        ({"kind": "vae", "kl_warmup_steps": -1}, "greater than or equal to 0"),
        ({"kind": "vae", "beta": float("nan")}, "finite number"),
        ({"kind": "wgan_gp", "critic_steps": 0}, "greater than or equal to 1"),
        ({"kind": "wgan_gp", "gradient_penalty": -1}, "greater than or equal to 0"),
        ({"kind": "gan"}, "'vae', 'wgan_gp', 'pixelcnn', 'ddpm'"),
    ],
)
def test_invalid_model_rejected(model: dict, message: str) -> None:
    body = {
        "dataset": {"family": "dots", "counts": [2]},
        "model": model,
        "training": {"steps": 10, "snapshot_every": 10},
    }

    with pytest.raises(ValidationError) as caught:
        RunSpec.model_validate(body)

    assert message in str(caught.value)


def test_invalid_training_rejected() -> None:
    body = {
        "dataset": {"family": "dots", "counts": [2]},
        "model": {"kind": "vae"},
        "training": {"steps": 10, "snapshot_every": 10, "lr_schedule": "linear"},
    }

    with pytest.raises(ValidationError) as caught:
        RunSpec.model_validate(body)

    assert "'constant' or 'cosine'" in str(caught.value)
