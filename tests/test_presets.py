from __future__ import annotations

import pytest

from biaslab.design import MODEL_KINDS, DotsDataset, RunSpec
from biaslab.presets import PRESET_NAMES, PRESETS, get_preset

PRESET_CASES = [(kind, name) for kind, presets in PRESETS.items() for name in presets]


def test_vae_and_wgan_gp_have_both_presets() -> None:
    for kind in ("vae", "wgan_gp"):
        assert set(PRESETS[kind]) == set(PRESET_NAMES), kind


@pytest.mark.parametrize(("kind", "name"), PRESET_CASES)
def test_preset_is_a_valid_run(kind: str, name: str) -> None:
    preset = get_preset(kind, name)

    spec = preset.run_spec(DotsDataset(counts=[2, 4], image_size=32))

    assert kind in MODEL_KINDS
    assert preset.model.kind == kind, "a preset is filed under its own model's kind"
    # Validating the dump again catches a preset built around a validator.
    assert RunSpec.model_validate(spec.model_dump()) == spec
    assert preset.description


@pytest.mark.parametrize("kind", [kind for kind, name in PRESET_CASES if name == "paper"])
def test_paper_preset_has_published_settings(kind: str) -> None:
    preset = get_preset(kind, "paper")

    assert preset.training.batch_size == 100
    assert preset.training.learning_rate == 1e-4
    assert preset.training.steps == 200_000
    if hasattr(preset.model, "z_dim"):
        assert preset.model.z_dim == 100


@pytest.mark.parametrize("kind", [kind for kind, name in PRESET_CASES if name == "quick"])
def test_quick_preset_fits_a_few_cpu_minutes(kind: str) -> None:
    preset = get_preset(kind, "quick")

    # The conv VAE trained about 1,100 images/s at 32x32 on one idle CPU core,
    # so 400,000 training images take about 6 minutes there. The bound is an estimate.
    assert preset.training.steps * preset.training.batch_size <= 400_000


@pytest.mark.parametrize("kind", ["pixelcnn", "ddpm"])
def test_slow_sampler_quick_preset_snapshots_thrice(kind: str) -> None:
    preset = get_preset(kind, "quick")

    # A snapshot of these kinds runs the network once per pixel (PixelCNN) or once
    # per DDIM step (DDPM) for every sample. So their quick presets sample three
    # times, the last at the last step, with 500 samples for the count histogram.
    assert preset.training.steps // preset.training.snapshot_every == 3
    assert preset.training.steps % preset.training.snapshot_every == 0
    assert preset.training.samples_per_snapshot >= 500


def test_wgan_gp_paper_uses_published_optimizer() -> None:
    preset = get_preset("wgan_gp", "paper")

    assert preset.model.kind == "wgan_gp"
    assert preset.model.gradient_penalty == 10
    assert preset.model.critic_steps == 2
    # None takes the model's default Adam betas, (0.5, 0.9) for WGAN-GP.
    assert preset.training.adam_betas is None


def test_unknown_preset_names_what_exists() -> None:
    with pytest.raises(KeyError, match=r"preset 'slow' of 'vae' does not exist; use one of"):
        get_preset("vae", "slow")
    with pytest.raises(KeyError, match=r"model kind 'gan' has no presets"):
        get_preset("gan", "quick")
