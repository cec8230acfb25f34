"""The combinations design and family: seeded cells, pinning, cells of samples, scores."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from biaslab.datasets.pie import render_pies
from biaslab.design import StudyCreate
from biaslab.design.combinations import ALL_CELLS, GRID, CombinationsDataset, candidate_cells
from biaslab.families import family_for
from biaslab.families.combinations import (
    CombinationsFamily,
    cell_feature,
    cell_indices,
    combination_scores,
)
from tests.examples import EXAMPLE_STUDY

FAMILY = CombinationsFamily()


def design(**fields) -> CombinationsDataset:
    return CombinationsDataset(**fields)


# Cells


def test_grid_has_2025_cells():
    assert len(ALL_CELLS) == 2025
    assert len(set(ALL_CELLS)) == 2025


def test_cells_deterministic_distinct_and_sorted():
    cells = design(combinations=40, selection_seed=5).cells()
    assert cells == design(combinations=40, selection_seed=5).cells()
    assert len(cells) == 40
    assert len(set(cells)) == 40, "a cell was drawn twice"
    assert list(cells) == sorted(cells)
    assert set(cells) <= set(ALL_CELLS)


def test_cells_change_with_seed():
    first = design(combinations=40, selection_seed=1).cells()
    second = design(combinations=40, selection_seed=2).cells()
    assert first != second


def test_cells_stable_across_versions():
    # The draw hashes the seed and each cell with SHA-256, so it never depends on numpy's
    # random streams. A change here changes the training cells of every stored study.
    assert design(combinations=3, selection_seed=0).cells() == (
        (3, 3, 2, 9),
        (5, 2, 2, 5),
        (9, 6, 8, 7),
    )


def test_larger_n_keeps_the_cells_of_smaller():
    small = set(design(combinations=10, selection_seed=3).cells())
    large = set(design(combinations=200, selection_seed=3).cells())
    assert small <= large, "growing N dropped cells"


def test_all_cells_when_n_is_2025():
    assert set(design(combinations=2025).cells()) == set(ALL_CELLS)


def test_pinned_feature_takes_only_listed_values():
    pinned = design(combinations=100, pin={"feature": "red", "values": [1, 9]})
    assert {cell[3] for cell in pinned.cells()} <= {1, 9}
    assert len(candidate_cells(pinned.pin)) == 5 * 9 * 9 * 2


def test_pinned_x_uses_its_own_grid():
    pinned = design(combinations=45, pin={"feature": "x", "values": [2]})
    cells = pinned.cells()
    assert len(cells) == 45
    assert {cell[1] for cell in cells} == {2}


def test_too_many_combinations_names_largest_n():
    with pytest.raises(ValidationError) as caught:
        design(combinations=900, pin={"feature": "red", "values": [1, 9]})
    errors = caught.value.errors()
    assert [error["loc"] for error in errors] == [("combinations",)]
    assert "only 810 cells have red in [1, 9]" in errors[0]["msg"]
    assert "use combinations of at most 810" in errors[0]["msg"]


def test_more_than_the_grid_rejected():
    with pytest.raises(ValidationError) as caught:
        design(combinations=2026)
    assert "less than or equal to 2025" in caught.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    ("pin", "location", "message"),
    [
        ({"feature": "size", "values": [2]}, ("pin", "values"), "from [1, 3, 5, 7, 9], got [2]"),
        ({"feature": "x", "values": [0]}, ("pin", "values", 0), "greater than or equal to 1"),
        ({"feature": "y", "values": [10]}, ("pin", "values", 0), "less than or equal to 9"),
        ({"feature": "red", "values": [3, 3]}, ("pin", "values"), "repeat a value"),
        ({"feature": "red", "values": []}, ("pin", "values"), "at least 1 item"),
        ({"feature": "colour", "values": [1]}, ("pin", "feature"), "'size', 'x', 'y' or 'red'"),
    ],
)
def test_invalid_pin_rejected(pin, location, message):
    with pytest.raises(ValidationError) as caught:
        design(combinations=5, pin=pin)
    errors = caught.value.errors()
    assert errors[0]["loc"] == location, f"errors {errors}"
    assert message in errors[0]["msg"], f"message {errors[0]['msg']!r}"


def test_one_colour_rejected():
    with pytest.raises(ValidationError) as caught:
        design(colours=1)
    assert caught.value.errors()[0]["loc"] == ("colours",)


def test_run_spec_alone_reproduces_cells():
    body = {
        **EXAMPLE_STUDY,
        "dataset": {"family": "combinations", "combinations": 25, "selection_seed": 9},
    }
    study = StudyCreate.model_validate(body)
    stored = study.model_dump_json()
    restored = StudyCreate.model_validate_json(stored)
    assert isinstance(restored.dataset, CombinationsDataset)
    assert restored.dataset.cells() == design(combinations=25, selection_seed=9).cells()


# Rendering and probing


def test_render_draws_only_training_cells():
    chosen = design(combinations=12, selection_seed=4, image_size=32)
    batch = family_for(chosen).render(chosen, 600, np.random.default_rng(0))
    cells = np.asarray(chosen.cells())
    index = batch.features["cell"].astype(int)
    assert set(np.unique(index)) == set(range(12)), "some training cells were never drawn"
    drawn = np.column_stack(
        [batch.features[name] for name in ("size", "x", "y", "red_share")]
    ).astype(int)
    assert np.array_equal(drawn, cells[index]), "cell indices disagree with the drawn values"


@pytest.mark.parametrize("image_size", [32, 64])
def test_probed_cells_match_renders(image_size):
    chosen = design(combinations=300, selection_seed=6, image_size=image_size, colours=3)
    batch = FAMILY.render(chosen, 1000, np.random.default_rng(1))
    probed = FAMILY.probe(batch.images, chosen)
    exact = (probed["cell"] == batch.features["cell"]).mean()
    assert exact >= 0.99, f"{image_size}x{image_size}: cell read exactly in {exact:.4f}"
    scores = FAMILY.scores(chosen, probed)
    assert scores["precision"] >= 0.99, f"scores {scores}"
    assert scores["recognized_share"] == 1.0, f"scores {scores}"


def test_cell_indices_snap_to_nearest_grid_value():
    cells = ((3, 4, 5, 7), (9, 9, 9, 9))
    features = {
        "size": np.array([3.8, 8.2, 2.2, 3.0, np.nan]),
        "x": np.array([4.4, 9.6, 4.0, 4.0, 4.0]),
        "y": np.array([5.3, 8.7, 5.0, 5.0, 5.0]),
        "red_share": np.array([6.1, 12.0, 7.0, 5.9, 7.0]),
    }
    indices = cell_indices(features, cells)
    assert indices[:4].tolist() == [0.0, 1.0, 0.0, 2.0]
    assert np.isnan(indices[4]), "a pie with an unreadable size got a cell"


def test_cell_feature_labels_and_other_bin():
    feature = cell_feature(((1, 2, 3, 5), (9, 9, 9, 9)))
    assert feature.labels == ("1/2/3/5", "9/9/9/9", "other")
    assert feature.categorical
    histogram = feature.histogram(np.array([0.0, 1.0, 1.0, 2.0, np.nan]))
    assert histogram.counts == [1, 2, 1]
    assert histogram.unrecognized == 1
    assert feature.describe(2.0) == "other"


# Scores


def test_generator_of_one_cell_has_low_recall():
    # A generator that always makes the same training cell: every recognized sample is a
    # training cell, but only one of the N cells is ever made.
    chosen = design(combinations=50, selection_seed=2, image_size=32)
    one_cell = np.asarray(chosen.cells()[7])
    images = render_pies(
        np.tile(one_cell, (400, 1)),
        image_size=32,
        colours=chosen.colours,
        noise=0.03,
        random_rotation=True,
        rng=np.random.default_rng(3),
    )
    scores = FAMILY.scores(chosen, FAMILY.probe(images, chosen))
    assert scores["precision"] == 1.0, f"scores {scores}"
    assert scores["recall"] == pytest.approx(1 / 50), f"scores {scores}"


def test_generator_outside_training_has_zero_precision():
    chosen = design(combinations=5, selection_seed=2, image_size=32)
    outside = next(cell for cell in ALL_CELLS if cell not in chosen.cells())
    images = render_pies(
        np.tile(np.asarray(outside), (50, 1)),
        image_size=32,
        colours=2,
        noise=0.0,
        random_rotation=True,
        rng=np.random.default_rng(4),
    )
    probed = FAMILY.probe(images, chosen)
    assert (probed["cell"] == 5).all(), "pies outside the training cells were not 'other'"
    scores = FAMILY.scores(chosen, probed)
    assert scores == {"precision": 0.0, "recall": 0.0, "recognized_share": 1.0}


def test_scores_count_precision_over_recognized_samples():
    # 4 training cells; samples: cells 0, 0, 1, other, other, and 5 unrecognized.
    cells = np.array([0, 0, 1, 4, 4] + [np.nan] * 5, dtype=np.float64)
    scores = combination_scores(cells, training_cells=4)
    assert scores["precision"] == pytest.approx(3 / 5)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["recognized_share"] == pytest.approx(5 / 10)


def test_scores_without_recognized_samples():
    scores = combination_scores(np.full(8, np.nan), training_cells=3)
    assert np.isnan(scores["precision"]), "precision over no recognized sample is undefined"
    assert scores["recall"] == 0.0
    assert scores["recognized_share"] == 0.0


def test_every_cell_generated_gives_full_recall():
    cells = np.concatenate([np.arange(6), np.arange(6)]).astype(np.float64)
    assert combination_scores(cells, training_cells=6) == {
        "precision": 1.0,
        "recall": 1.0,
        "recognized_share": 1.0,
    }


def test_grid_values():
    assert GRID["size"] == (1, 3, 5, 7, 9)
    assert GRID["red"] == (1, 3, 5, 7, 9)
    assert GRID["x"] == tuple(range(1, 10))
