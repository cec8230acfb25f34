import copy

import pytest
from pydantic import ValidationError

from biaslab.design import StudyCreate, expand
from tests.examples import EXAMPLE_STUDY


def example(**changes: dict) -> dict:
    body = copy.deepcopy(EXAMPLE_STUDY)
    for section, values in changes.items():
        body[section].update(values)
    return body


def test_example_study_accepted_as_written():
    study = StudyCreate.model_validate(EXAMPLE_STUDY)
    assert study.dataset.counts == [2, 4]
    assert study.dataset.dot_radius == 0.08, "the default radius is 0.08 of the width"
    assert study.dataset.training_images is None, "fresh images every step by default"
    assert study.training.steps == 3000


def test_expand_gives_one_complete_run():
    study = StudyCreate.model_validate(EXAMPLE_STUDY)
    runs = expand(study)
    assert len(runs) == 1
    assert runs[0].dataset == study.dataset
    assert runs[0].training.seed == 0


def test_equal_weights_by_default():
    study = StudyCreate.model_validate(example(dataset={"counts": [1, 2, 5]}))
    assert study.dataset.count_probabilities() == pytest.approx([1 / 3] * 3)


def test_weights_normalized():
    study = StudyCreate.model_validate(example(dataset={"counts": [2, 4], "weights": [3, 1]}))
    assert study.dataset.count_probabilities() == pytest.approx([0.75, 0.25])


@pytest.mark.parametrize(
    ("changes", "location"),
    [
        ({"dataset": {"counts": [0]}}, ("dataset", "dots", "counts", 0)),
        ({"dataset": {"counts": [100]}}, ("dataset", "dots", "counts", 0)),
        ({"dataset": {"counts": []}}, ("dataset", "dots", "counts")),
        ({"dataset": {"image_size": 7}}, ("dataset", "dots", "image_size")),
        ({"training": {"learning_rate": -0.1}}, ("training", "learning_rate")),
        ({"training": {"steps": 1_000_000_000}}, ("training", "steps")),
        ({"training": {"samples_per_snapshot": 10}}, ("training", "samples_per_snapshot")),
        ({"model": {"z_dim": 1}}, ("model", "vae", "z_dim")),
        ({"dataset": {"noise": 0.9}}, ("dataset", "dots", "noise")),
    ],
)
def test_out_of_range_rejected(changes, location):
    with pytest.raises(ValidationError) as caught:
        StudyCreate.model_validate(example(**changes))
    locations = [error["loc"] for error in caught.value.errors()]
    assert location in locations, f"expected an error at {location}, got {locations}"


def test_repeated_counts_rejected():
    with pytest.raises(ValidationError, match="repeat a value") as caught:
        StudyCreate.model_validate(example(dataset={"counts": [2, 2]}))
    assert caught.value.errors()[0]["loc"] == ("dataset", "dots", "counts")


def test_weights_length_must_match():
    with pytest.raises(ValidationError, match="give one weight per count"):
        StudyCreate.model_validate(example(dataset={"counts": [2, 4], "weights": [1.0]}))


def test_snapshot_every_within_steps():
    with pytest.raises(
        ValidationError, match="snapshot_every 500 is larger than steps 100"
    ) as caught:
        StudyCreate.model_validate(example(training={"steps": 100, "snapshot_every": 500}))
    assert caught.value.errors()[0]["loc"] == ("training", "snapshot_every")


def test_unknown_field_rejected():
    with pytest.raises(ValidationError) as caught:
        StudyCreate.model_validate(example(model={"depth": 3}))
    assert caught.value.errors()[0]["type"] == "extra_forbidden"


def test_counts_that_do_not_fit_rejected():
    with pytest.raises(ValidationError, match="at most 6 dots fit") as caught:
        StudyCreate.model_validate(
            example(dataset={"image_size": 64, "counts": [2, 16], "dot_radius": 0.15})
        )
    assert caught.value.errors()[0]["loc"] == ("dataset", "dots")


def test_radius_too_small_to_count_rejected():
    with pytest.raises(ValidationError, match="needs at least 2.5 px") as caught:
        StudyCreate.model_validate(example(dataset={"image_size": 32, "dot_radius": 0.05}))
    assert "larger image_size" in str(caught.value)


def test_small_radius_allowed_at_64():
    study = StudyCreate.model_validate(example(dataset={"image_size": 64, "dot_radius": 0.05}))
    assert study.dataset.dot_radius == 0.05
