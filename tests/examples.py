"""Request bodies shared by several test files."""

EXAMPLE_STUDY = {
    "name": "two and four dots",
    "dataset": {"family": "dots", "image_size": 32, "counts": [2, 4], "noise": 0.03},
    "model": {"kind": "vae", "architecture": "conv", "z_dim": 32, "beta": 1.0},
    "training": {
        "steps": 3000,
        "batch_size": 64,
        "learning_rate": 0.001,
        "snapshot_every": 250,
        "samples_per_snapshot": 1000,
        "seed": 0,
    },
}
