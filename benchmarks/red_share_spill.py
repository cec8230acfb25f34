"""How many rendered pies the probe puts outside the bin of their true red share.

Run: python benchmarks/red_share_spill.py [--images 20000]

The red-share feature has a bin at every half value of the 1-9 scale (0.05 in share). The
probe's red-share error on renders can exceed half a bin (0.025), so a render of a trained
value can land in a neighbouring half bin. A model that copied its training images exactly
would show that spill in its generated histogram. For each red value of the "red-share"
template, the script renders pies through the pie family at 32x32 and 64x64 with the
template's design (2 colours, noise 0.03, size, x and y at 5, random start angle), probes
them with the family's probe and bins the probed red share on the feature's bins. Rows
with size, x and y drawn per image (value 0) add the small and off-centre discs.

Each row prints the share of images in their own bin, in the bin half a value below and
above, elsewhere, and unrecognized, and the largest red-share error in share.
"""

from __future__ import annotations

import argparse
from typing import Literal

import numpy as np

from biaslab.design.pie import PieDataset
from biaslab.families.pie import RED_SHARE_FEATURE, PieFamily

TEMPLATE_RED_VALUES = (3, 4, 9)
# Red share per value of the 1-9 scale.
SHARE_PER_VALUE = 0.1
CHUNK = 2_000


def spill_row(
    image_size: Literal[32, 64], entry: tuple[int, int, int, int], n: int, seed: int
) -> dict[str, float]:
    """Return the shares of n renders of `entry` per bin position relative to the true bin."""
    design = PieDataset(image_size=image_size, colours=2, noise=0.03, values=[entry])
    family = PieFamily()
    rng = np.random.default_rng(seed)
    true_parts, probed_parts = [], []
    for start in range(0, n, CHUNK):
        batch = family.render(design, min(CHUNK, n - start), rng)
        true_parts.append(batch.features["red_share"])
        probed_parts.append(family.probe(batch.images, design)["red_share"])
    true = np.concatenate(true_parts)
    probed = np.concatenate(probed_parts)

    recognized = ~np.isnan(probed)
    offset = RED_SHARE_FEATURE.bin_indices(probed) - RED_SHARE_FEATURE.bin_indices(true)
    error = np.abs(probed - true)[recognized] * SHARE_PER_VALUE
    return {
        "own": float(np.mean(recognized & (offset == 0))),
        "below": float(np.mean(recognized & (offset == -1))),
        "above": float(np.mean(recognized & (offset == 1))),
        "elsewhere": float(np.mean(recognized & (np.abs(offset) > 1))),
        "unrecognized": float(np.mean(~recognized)),
        "max_error": float(error.max()) if error.size else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="renders per row")
    args = parser.parse_args()

    print(
        "| image size | values (size, x, y, red) | own bin | half a value below | "
        "half a value above | elsewhere | unrecognized | largest error in share |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    sizes: tuple[Literal[32, 64], ...] = (32, 64)
    for image_size in sizes:
        for fixed in (True, False):
            for red in TEMPLATE_RED_VALUES:
                entry = (5, 5, 5, red) if fixed else (0, 0, 0, red)
                row = spill_row(image_size, entry, args.images, seed=image_size * 100 + red)
                print(
                    f"| {image_size}x{image_size} | {list(entry)} | {row['own']:.2%} | "
                    f"{row['below']:.2%} | {row['above']:.2%} | {row['elsewhere']:.2%} | "
                    f"{row['unrecognized']:.2%} | {row['max_error']:.4f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
