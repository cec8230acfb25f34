"""Dot placement: the grid of live cells, replicated restarts, and the layouts they produce."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from biaslab.datasets import dots
from biaslab.datasets.dots import place_dots

IMAGE_SIZE = 64
RADIUS = 0.08 * IMAGE_SIZE


def random_room(seed: int, slot: int, per_dot: bool) -> tuple[dots._Room, np.ndarray, dict]:
    """Return the room of 40 images with `slot` random dots each, and what it was built from."""
    rng = np.random.default_rng(seed)
    waiting = 40
    low, high = RADIUS, IMAGE_SIZE - RADIUS
    placed = rng.uniform(low, high, size=(2, slot, waiting))
    # Per-dot limits stand for dots of mixed radii.
    limit = rng.uniform(8.0, 14.0, size=(slot, waiting)) ** 2 if per_dot else (2.5 * RADIUS) ** 2
    room = dots._Room(placed, low, high, limit)
    return room, placed, {"low": low, "high": high, "limit": limit}


def live_cells(room: dots._Room) -> np.ndarray:
    """Return the live mask (waiting, cells * cells)."""
    return room.live


def cell_of(points: np.ndarray, low: float, high: float) -> np.ndarray:
    """Return the flat grid cell of points (2, ...) in the room's grid."""
    size = (high - low) / dots._ROOM_CELLS
    row = np.minimum(((points[0] - low) // size).astype(np.int64), dots._ROOM_CELLS - 1)
    column = np.minimum(((points[1] - low) // size).astype(np.int64), dots._ROOM_CELLS - 1)
    return row * dots._ROOM_CELLS + column


@pytest.mark.parametrize("per_dot", [False, True])
@pytest.mark.parametrize("slot", [1, 6, 12])
def test_free_positions_lie_in_live_cells(slot, per_dot):
    room, placed, built = random_room(slot, slot, per_dot)
    rng = np.random.default_rng(100 + slot)
    points = rng.uniform(built["low"], built["high"], size=(2, placed.shape[2], 20_000))
    offsets = points[:, None] - placed[..., None]  # (2, slot, waiting, points)
    squared = (offsets**2).sum(axis=0)
    limit = built["limit"]
    per_point = limit[..., None] if isinstance(limit, np.ndarray) else limit
    free = (squared > per_point).all(axis=0)  # (waiting, points)
    live = live_cells(room)
    in_live = np.take_along_axis(live, cell_of(points, built["low"], built["high"]), axis=1)
    lost = free & ~in_live
    assert not lost.any(), (
        f"{lost.sum()} free positions of {free.sum()} lie in cells marked dead, so the room "
        "would never propose them"
    )
    assert (~live).any(), "no cell is dead: the room would save nothing"


def test_draws_uniform_over_live_cells():
    room, placed, built = random_room(7, 6, per_dot=False)
    draws = room.draw(4_000, np.random.default_rng(8))
    assert draws.shape == (2, placed.shape[2], 4_000)
    live = live_cells(room)
    cells = cell_of(draws, built["low"], built["high"])
    assert np.take_along_axis(live, cells, axis=1).all(), "a candidate came from a dead cell"
    for image in range(3):
        observed = np.bincount(cells[image], minlength=live.shape[1])[live[image]]
        result = stats.chisquare(observed)
        assert result.pvalue > 1e-3, (
            f"image {image}: candidates are not uniform over its {live[image].sum()} live cells "
            f"(chi-square p = {result.pvalue:.2g})"
        )


def test_subset_keeps_rooms_of_kept_images():
    room, placed, built = random_room(9, 6, per_dot=False)
    keep = np.arange(placed.shape[2]) % 3 == 0
    draws = room.subset(keep).draw(500, np.random.default_rng(10))
    live = live_cells(room)[keep]
    cells = cell_of(draws, built["low"], built["high"])
    assert draws.shape[1] == keep.sum()
    assert np.take_along_axis(live, cells, axis=1).all(), "a kept image drew from another's room"


def test_jammed_image_has_no_live_cell():
    # Dots on a square lattice 12 px apart, each excluding 12.8 px around it, leave no room.
    spacing = 12.0
    axis = np.arange(RADIUS, IMAGE_SIZE - RADIUS + spacing, spacing)
    grid_y, grid_x = np.meshgrid(axis, axis, indexing="ij")
    placed = np.stack([grid_y.ravel(), grid_x.ravel()])[:, :, None]
    room = dots._Room(placed, RADIUS, IMAGE_SIZE - RADIUS, (2.5 * RADIUS) ** 2)
    assert not room.any[0], f"a jammed image kept {room.totals[0]} live cells"


@pytest.mark.parametrize(
    ("success", "budget", "expected"),
    [
        (1.0, 100, 1),  # every attempt placed: one is enough
        (0.0, 100, dots._MAX_REPLICAS),  # none placed: as many as allowed
        (0.5, 100, 4),  # 1 - 0.5 ** 4 >= 0.9
        (0.0, 3, 3),  # never beyond the attempts left
    ],
)
def test_replicas_follow_last_pass(success, budget, expected):
    replicas = dots._replicas(np.array([success]), np.array([budget]))
    assert replicas.tolist() == [expected]


def reference_layouts(count: int, images: int, spacing: float, seed: int) -> np.ndarray:
    """Place dots by plain sequential rejection sampling, one image at a time."""
    rng = np.random.default_rng(seed)
    limit = ((2 + spacing) * RADIUS) ** 2
    layouts = []
    while len(layouts) < images:
        placed = np.empty((0, 2))
        for _ in range(count):
            for _ in range(64):
                candidates = rng.uniform(RADIUS, IMAGE_SIZE - RADIUS, size=(256, 2))
                squared = ((candidates[:, None] - placed[None]) ** 2).sum(axis=2)
                fits = (squared > limit).all(axis=1)
                if fits.any():
                    placed = np.vstack([placed, candidates[fits.argmax()]])
                    break
            else:
                break
        if len(placed) == count:
            layouts.append(placed)
    return np.array(layouts)


def nearest_gaps(layouts: np.ndarray) -> np.ndarray:
    """Return each dot's distance to its nearest neighbour, flattened."""
    gaps = np.linalg.norm(layouts[:, :, None] - layouts[:, None], axis=-1)
    count = layouts.shape[1]
    gaps[:, np.arange(count), np.arange(count)] = np.inf
    return gaps.min(axis=2).ravel()


@pytest.mark.parametrize(("count", "spacing"), [(14, 0.5), (16, 0.1)])
def test_dense_layouts_match_rejection_sampling(count, spacing):
    placed = place_dots(
        np.full(600, count),
        image_size=IMAGE_SIZE,
        radius=RADIUS,
        rng=np.random.default_rng(11),
        min_spacing=spacing,
    )
    reference = reference_layouts(count, 600, spacing, seed=12)
    for name, ours, theirs in [
        ("nearest-neighbour gap", nearest_gaps(placed), nearest_gaps(reference)),
        ("x coordinate", placed[..., 1].ravel(), reference[..., 1].ravel()),
        (
            "distance from the centre",
            np.linalg.norm(placed - 32, axis=-1).ravel(),
            np.linalg.norm(reference - 32, axis=-1).ravel(),
        ),
    ]:
        result = stats.ks_2samp(ours, theirs)
        assert result.pvalue > 1e-3, (
            f"{count} dots, spacing {spacing}: the {name} differs from plain rejection "
            f"sampling (KS p = {result.pvalue:.2g}, means {ours.mean():.3f} and "
            f"{theirs.mean():.3f})"
        )
