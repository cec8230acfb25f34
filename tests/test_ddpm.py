from __future__ import annotations

import copy
import math

import pytest
import torch

from biaslab.design import DdpmModel, RunSpec
from biaslab.models import parameter_count
from biaslab.models.base import build_model
from biaslab.models.ddpm import Ddpm, ddim_timesteps, noise_schedule

CPU = torch.device("cpu")
ARCHITECTURES = ["fc", "conv_small", "conv", "conv_large"]


def make_spec(
    architecture: str = "conv_small",
    image_size: int = 32,
    diffusion_steps: int = 20,
    sampling_steps: int | None = 5,
    schedule: str = "linear",
    ema_decay: float = 0.9999,
    min_snr_gamma: float | None = None,
) -> RunSpec:
    return RunSpec.model_validate(
        {
            "dataset": {"family": "dots", "counts": [2], "image_size": image_size},
            "model": {
                "kind": "ddpm",
                "architecture": architecture,
                "diffusion_steps": diffusion_steps,
                "sampling_steps": sampling_steps,
                "noise_schedule": schedule,
                "ema_decay": ema_decay,
                "min_snr_gamma": min_snr_gamma,
            },
            "training": {"steps": 10, "snapshot_every": 10, "learning_rate": 1e-3},
        }
    )


def make_ddpm(seed: int = 0, **changes: object) -> Ddpm:
    torch.manual_seed(seed)
    model = build_model(make_spec(**changes), CPU)  # type: ignore[arg-type]
    assert isinstance(model, Ddpm)
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


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_destroys_signal(kind: str) -> None:
    betas = noise_schedule(kind, 1000)
    alpha_bar = torch.cumprod(1 - betas, dim=0)

    assert betas.shape == (1000,)
    assert (betas > 0).all() and (betas < 1).all()
    assert alpha_bar[0].item() > 0.99
    assert alpha_bar[-1].item() < 1e-4


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [10, 20, 21])
def test_short_schedule_keeps_signal_finite(kind: str, steps: int) -> None:
    # Rescaled to 20 steps or fewer, the linear schedule's last betas would reach 1.
    betas = noise_schedule(kind, steps)
    alpha_bar = torch.cumprod(1 - betas, dim=0)

    assert (betas < 1).all(), f"{kind} at {steps} steps: betas {betas.tolist()}"
    assert (alpha_bar > 0).all(), f"{kind} at {steps} steps: alpha-bar reaches 0"


def test_linear_schedule_is_the_papers_at_1000_steps() -> None:
    betas = noise_schedule("linear", 1000)

    assert betas[0].item() == pytest.approx(1e-4)
    assert betas[-1].item() == pytest.approx(0.02)


def test_ddim_timesteps_spacing() -> None:
    assert ddim_timesteps(1000, 1000) == list(range(1000))
    assert ddim_timesteps(1000, 1) == [999]
    steps = ddim_timesteps(1000, 50)
    assert len(steps) == 50
    assert steps[0] == 0
    assert steps[-1] == 999
    assert len(set(steps)) == 50
    with pytest.raises(ValueError, match="sampling_steps 51 is invalid"):
        ddim_timesteps(50, 51)


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_training_steps_finite(architecture: str, image_size: int) -> None:
    model = make_ddpm(architecture=architecture, image_size=image_size)
    images = dot_images(2, image_size)

    terms = [model.training_step(images) for _ in range(2)]

    for step in terms:
        assert set(step) == {"loss"}
        assert step["loss"].dim() == 0
        assert not step["loss"].requires_grad
        assert math.isfinite(step["loss"].item())
        # The target noise has unit variance, so an untrained denoiser's error is near 1.
        assert 0.05 < step["loss"].item() < 10


@pytest.mark.parametrize("architecture", ["conv_small", "fc"])
def test_loss_decreases_on_fixed_set(architecture: str) -> None:
    model = make_ddpm(architecture=architecture, diffusion_steps=1000, schedule="cosine")
    images = dot_images(8, 32)

    losses = [model.training_step(images)["loss"].item() for _ in range(40)]

    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"noise error went from {first:.3f} to only {last:.3f}"
    # Predicting zero noise scores 1. The fc denoiser stayed there before its skip path.
    assert last < 0.6, f"{architecture}: noise error {last:.3f} after 40 steps"


@pytest.mark.parametrize(
    "sampling_steps, schedule",
    [(5, "linear"), (20, "cosine"), (None, "linear")],
    ids=["ddim_5", "ddim_all_steps", "ancestral"],
)
def test_sample_shape_and_range(sampling_steps: int | None, schedule: str) -> None:
    model = make_ddpm(diffusion_steps=20, sampling_steps=sampling_steps, schedule=schedule)
    model.train()

    samples = model.sample(3, torch.Generator().manual_seed(1))

    assert model.denoiser.training, "sample() must restore training mode"
    assert samples.shape == (3, 3, 32, 32)
    assert samples.min().item() >= 0.0
    assert samples.max().item() <= 1.0


@pytest.mark.parametrize("sampling_steps", [5, None], ids=["ddim", "ancestral"])
def test_same_generator_same_samples(sampling_steps: int | None) -> None:
    model = make_ddpm(sampling_steps=sampling_steps)

    first = model.sample(2, torch.Generator().manual_seed(3))
    second = model.sample(2, torch.Generator().manual_seed(3))
    other = model.sample(2, torch.Generator().manual_seed(4))

    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_ddim_is_deterministic_after_initial_noise() -> None:
    # With eta = 0 the only randomness is the starting noise, so the global
    # random state must not change the result.
    model = make_ddpm(sampling_steps=5)
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    torch.manual_seed(10)
    first = model.sample_ddim(noise.clone(), 5)
    torch.manual_seed(11)
    second = model.sample_ddim(noise.clone(), 5)

    assert torch.equal(first, second)


def test_ddim_with_one_step_returns_x0_estimate() -> None:
    model = make_ddpm(diffusion_steps=20)
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    alpha_bar = model.alpha_bar[19]

    with torch.no_grad():
        expected, _ = model.estimate_x0(noise, 19, alpha_bar)
        actual = model.sample_ddim(noise, 1)

    torch.testing.assert_close(actual, expected)


def test_resume_gives_identical_losses() -> None:
    images = dot_images(4, 32)
    model = make_ddpm(seed=1)
    for _ in range(2):
        model.training_step(images)
    # A deep copy, as a checkpoint file would be: state_dict() shares the live tensors.
    state = copy.deepcopy(model.state_dict())
    random_state = torch.get_rng_state()
    expected = [model.training_step(images)["loss"].item() for _ in range(2)]

    restored = make_ddpm(seed=2)
    restored.load_state_dict(state)
    torch.set_rng_state(random_state)
    actual = [restored.training_step(images)["loss"].item() for _ in range(2)]

    assert actual == expected


def test_averaged_weights_follow_warmup_decay() -> None:
    images = dot_images(4, 32)
    model = make_ddpm(ema_decay=0.2)
    trained = []
    for _ in range(3):
        model.training_step(images)
        trained.append(model.denoiser.output.weight.detach().clone())

    # The first update copies the weights. After n updates the next one keeps
    # min(0.2, (1 + n) / (10 + n)) of the average: 2 / 11 after one, then the cap 0.2.
    expected = trained[0]
    expected = expected + (trained[1] - expected) * (1 - 2 / 11)
    expected = expected + (trained[2] - expected) * (1 - 0.2)

    torch.testing.assert_close(model.averaged.module.output.weight, expected)


def noise_estimates_after_training(**changes: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Train 3 steps, then return the averaged and the trained weights' estimates of one input."""
    images = dot_images(4, 32)
    model = make_ddpm(**changes)
    for _ in range(3):
        model.training_step(images)
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    steps = torch.full((2,), 10, dtype=torch.long)

    with torch.no_grad():
        averaged = model.predict_noise(noise, steps, model.averaged.module)
        trained = model.predict_noise(noise, steps)
    return averaged, trained


def test_zero_decay_samples_from_trained_weights() -> None:
    averaged, trained = noise_estimates_after_training(ema_decay=0.0)

    torch.testing.assert_close(averaged, trained)


def test_samples_differ_from_trained_weights() -> None:
    averaged, trained = noise_estimates_after_training()

    assert not torch.allclose(averaged, trained), "samples must come from the averaged weights"


def test_resume_restores_averaged_weights() -> None:
    images = dot_images(4, 32)
    model = make_ddpm(seed=1)
    for _ in range(3):
        model.training_step(images)
    state = copy.deepcopy(model.state_dict())
    expected = model.sample(2, torch.Generator().manual_seed(5))

    restored = make_ddpm(seed=2)
    restored.load_state_dict(state)
    actual = restored.sample(2, torch.Generator().manual_seed(5))

    assert torch.equal(actual, expected)
    assert int(restored.averaged.n_averaged) == 3


def test_old_checkpoint_starts_new_average() -> None:
    images = dot_images(4, 32)
    model = make_ddpm(seed=1)
    for _ in range(3):
        model.training_step(images)
    state = copy.deepcopy(model.state_dict())
    del state["averaged"]

    restored = make_ddpm(seed=2)
    restored.load_state_dict(state)

    for averaged, trained in zip(
        restored.averaged.module.parameters(), model.denoiser.parameters(), strict=True
    ):
        assert torch.equal(averaged, trained)
    restored.training_step(images)
    assert int(restored.averaged.n_averaged) == 1


def test_parameter_ratios() -> None:
    for image_size in [32, 64]:
        counts = {
            architecture: parameter_count(
                DdpmModel.model_validate({"architecture": architecture}), image_size
            )
            for architecture in ARCHITECTURES
        }

        assert 0.4 < counts["conv_small"] / counts["conv"] < 0.6, counts
        assert 3.5 < counts["conv_large"] / counts["conv"] < 4.5, counts


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_parameter_count_matches_network(architecture: str) -> None:
    for image_size in [32, 64]:
        model = make_ddpm(architecture=architecture, image_size=image_size)
        built = sum(parameter.numel() for parameter in model.denoiser.parameters())

        assert (
            parameter_count(DdpmModel.model_validate({"architecture": architecture}), image_size)
            == built
        )


def test_sampling_steps_beyond_schedule_rejected() -> None:
    with pytest.raises(ValueError, match="sampling_steps 30 is larger than diffusion_steps 20"):
        make_spec(diffusion_steps=20, sampling_steps=30)


def test_min_snr_weights_follow_signal_to_noise() -> None:
    model = make_ddpm(diffusion_steps=1000, schedule="cosine", min_snr_gamma=5.0)
    alpha_bar = torch.cumprod(1 - noise_schedule("cosine", 1000), dim=0)
    snr = alpha_bar / (1 - alpha_bar)
    expected = torch.minimum(snr, torch.tensor(5.0)) / snr

    assert model.loss_weight is not None
    torch.testing.assert_close(model.loss_weight, expected.float())
    # Steps noisier than SNR 5 keep their whole weight, and the least noisy step nearly none.
    assert (model.loss_weight[snr <= 5] == 1).all()
    assert model.loss_weight[0].item() < 0.01


def test_min_snr_loss_is_weighted_error() -> None:
    model = make_ddpm(diffusion_steps=1000, schedule="cosine", min_snr_gamma=2.0)
    images = dot_images(16, 32)
    x0 = images * 2 - 1
    # The step's own draws, replayed from the same seed.
    torch.manual_seed(7)
    t = torch.randint(0, 1000, (16,))
    noise = torch.randn_like(x0)
    alpha_bar = model.alpha_bar[t][:, None, None, None]
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
    with torch.no_grad():
        error = (model.predict_noise(x_t, t) - noise).square().mean(dim=(1, 2, 3))
    assert model.loss_weight is not None
    weights = model.loss_weight[t]
    assert (weights < 1).any(), "no step of this seed has SNR above gamma"
    assert (weights == 1).any(), "no step of this seed has SNR below gamma"

    torch.manual_seed(7)
    loss = model.training_step(images)["loss"].item()

    assert loss == pytest.approx((weights * error).mean().item(), rel=1e-5)
    assert loss < error.mean().item()


def test_min_snr_gamma_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_snr_gamma"):
        make_spec(min_snr_gamma=0.0)
