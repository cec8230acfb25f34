"""Named starting points for each model kind: model fields plus training fields.

- `quick`: recognizable dots at 32x32 on 2 CPU cores within a few minutes.
- `paper`: the published settings (batch 100, Adam with learning rate 1e-4,
  200,000 steps, a 100-dimensional latent where the model has one), for a GPU.

`PRESETS[kind][name]` is one `Preset`. A model kind adds its presets as
one more entry of `PRESETS`. This module imports no torch, so the API can list
presets cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from biaslab.design import (
    Dataset,
    DdpmModel,
    Model,
    PixelCnnModel,
    RunSpec,
    Training,
    VaeModel,
    WganGpModel,
)

PresetName = Literal["quick", "paper"]
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)


@dataclass(frozen=True)
class Preset:
    """A model design and a training recipe that go together."""

    description: str
    model: Model
    training: Training

    def run_spec(self, dataset: Dataset) -> RunSpec:
        """Return the run that trains this preset on `dataset`."""
        return RunSpec(dataset=dataset, model=self.model, training=self.training)


# Snapshots and checkpoints every 5,000 steps make 40 of each in a paper run.
PAPER_TRAINING = Training(
    steps=200_000,
    batch_size=100,
    learning_rate=1e-4,
    snapshot_every=5_000,
    checkpoint_every=5_000,
)

PRESETS: dict[str, dict[PresetName, Preset]] = {
    "vae": {
        "quick": Preset(
            description=(
                "Conv VAE, z 32, beta 2, 6,000 steps of batch 64 with Adam 1e-3 and cosine decay; "
                "about 3 minutes on 2 CPU cores."
            ),
            # Trained on dots {2, 4} by benchmarks/preset_histograms.py (seed 0, one thread),
            # this preset left 52.9% of 1,000 samples unrecognized; of all samples 1 dot:
            # 0.5%, 2: 5.6%, 3: 13.6%, 4: 17.0%, 5: 7.9%, 6: 2.1%, 7: 0.3%, 8: 0.1%. The
            # 6,000 steps took 299 s of CPU (589 s wall at load average 4-5). Another run of
            # these settings left 48%, so one run's share moves by several points. Beta 1
            # with constant Adam 1e-3 for 3,000 steps left 58%, and beta 0.5 with Adam 2e-3
            # left 66%. Beta 4 left 55.5% at step 2,000 and 56.5% at step 4,000, where beta
            # 2 left 61.5% and 58.7%. Most failures are faint or smeared dots in decoder means.
            # On 2 threads of an otherwise idle machine the preset took 197 s of wall time.
            model=VaeModel(architecture="conv", z_dim=32, beta=2.0),
            training=Training(steps=6000, batch_size=64, learning_rate=1e-3, lr_schedule="cosine"),
        ),
        "paper": Preset(
            description="Conv VAE, z 100, 200,000 steps of batch 100 with Adam 1e-4.",
            model=VaeModel(architecture="conv", z_dim=100, beta=1.0),
            training=PAPER_TRAINING,
        ),
    },
    "wgan_gp": {
        "quick": Preset(
            description=(
                "Small conv WGAN-GP, z 64, 3,000 steps of batch 64 (32 real images per "
                "critic step) with Adam 5e-4 and betas (0.5, 0.9); about 4 minutes on 2 CPU cores."
            ),
            # On dots {2, 4}, 52.8% of samples stayed unrecognized after 3,000 steps (64.4% after
            # 2,000), in 312 s of CPU on one thread, and 225 s of wall time on 2 threads of an
            # otherwise idle machine. docs/benchmarks.md has the histograms.
            model=WganGpModel(architecture="conv_small", z_dim=64),
            training=Training(steps=3000, batch_size=64, learning_rate=5e-4),
        ),
        "paper": Preset(
            description=(
                "Conv WGAN-GP, z 100, penalty 10, 2 critic steps, "
                "200,000 steps of batch 100 with Adam 1e-4 and betas (0.5, 0.9)."
            ),
            model=WganGpModel(architecture="conv", z_dim=100, gradient_penalty=10, critic_steps=2),
            training=PAPER_TRAINING,
        ),
    },
    "pixelcnn": {
        "quick": Preset(
            description=(
                "Gated conv PixelCNN, 5 logistics, 1,200 steps of batch 16 with Adam 2e-3 "
                "and cosine decay; 500 samples per snapshot; about 5 minutes on 2 CPU cores."
            ),
            # On dots {2, 4} (benchmarks/preset_histograms.py, seed 0, one thread), 48.6% of
            # 500 samples stayed unrecognized, in 410 s of CPU with one snapshot, and 71.0% with
            # seed 1. A snapshot takes about 14 s, so the time is nearly all training. Less
            # training left more unrecognized: 900 steps 76.0% (332 s), conv_small 80.6%
            # (339 s), batch 8 69.4% (239 s) and 77.2% with seed 1.
            # On 2 threads of an otherwise idle machine the preset took 284 s of wall time with
            # its three snapshots and left 55.0% unrecognized.
            model=PixelCnnModel(architecture="conv", mixture_components=5),
            training=Training(
                steps=1200,
                batch_size=16,
                learning_rate=2e-3,
                lr_schedule="cosine",
                snapshot_every=400,
                samples_per_snapshot=500,
            ),
        ),
        "paper": Preset(
            description=(
                "Gated conv PixelCNN, 5 logistics, 200,000 steps of batch 100 with Adam 1e-4."
            ),
            model=PixelCnnModel(architecture="conv", mixture_components=5),
            training=PAPER_TRAINING,
        ),
    },
    "ddpm": {
        "quick": Preset(
            description=(
                "Small conv U-Net DDPM, 1,000 cosine-schedule steps, loss weighted by "
                "min(SNR, 5) / SNR, 1,500 steps of batch 32 with Adam 2e-3 and cosine decay; "
                "DDIM snapshots in 25 steps every 500 steps, from the trained weights; about "
                "6 minutes on 2 CPU cores."
            ),
            # On dots {2, 4} (benchmarks/preset_histograms.py, one thread), 1,500 steps with
            # the min-SNR weighting left 36.4-45.0% of 500 samples unrecognized in three runs.
            # The same 1,500 steps without it left 87.6%, and 3,000 steps without it 43.0%.
            # 1,000 steps with gamma 5 or 2 left 87.8% and 83.0%.
            # Averaged weights lag a model that still changes fast (93.0% against 80.0% at
            # step 1,000 of the unweighted loss), so snapshots use the trained ones.
            model=DdpmModel(
                architecture="conv_small",
                diffusion_steps=1000,
                noise_schedule="cosine",
                sampling_steps=25,
                ema_decay=0.0,
                min_snr_gamma=5.0,
            ),
            training=Training(
                steps=1500,
                batch_size=32,
                learning_rate=2e-3,
                lr_schedule="cosine",
                warmup_steps=100,
                snapshot_every=500,
                samples_per_snapshot=500,
            ),
        ),
        "paper": Preset(
            description=(
                "Conv U-Net DDPM, 1,000 linear-schedule steps, 200,000 steps of batch 100 "
                "with Adam 1e-4; DDIM snapshots in 50 steps."
            ),
            model=DdpmModel(architecture="conv", diffusion_steps=1000, sampling_steps=50),
            training=PAPER_TRAINING,
        ),
    },
}


def get_preset(kind: str, name: str) -> Preset:
    """Return the preset `name` of model kind `kind`; raise KeyError naming what exists."""
    presets = PRESETS.get(kind)
    if presets is None:
        raise KeyError(f"model kind {kind!r} has no presets; kinds with presets: {sorted(PRESETS)}")
    if name not in presets:
        raise KeyError(f"preset {name!r} of {kind!r} does not exist; use one of {sorted(presets)}")
    return presets[name]  # type: ignore[index]
