import copy

import pytest
from pydantic import ValidationError

from biaslab.design import RunSpec, StudyCreate, expand
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


# Dots: radius modes, colour modes and spacing


def dots_error(**dataset: object) -> str:
    """Validate a study with these dataset fields and return the dataset's error message."""
    with pytest.raises(ValidationError) as caught:
        StudyCreate.model_validate(example(dataset=dataset))
    errors = caught.value.errors()
    assert len(errors) == 1, f"expected one error, got {errors}"
    assert errors[0]["loc"][:2] == ("dataset", "dots"), f"error at {errors[0]['loc']}"
    return str(errors[0]["msg"]).removeprefix("Value error, ")


def test_stored_dots_design_keeps_defaults():
    study = StudyCreate.model_validate(EXAMPLE_STUDY)
    dataset = study.dataset
    assert dataset.radius_mode == "fixed"
    assert dataset.colour_mode == "random"
    assert dataset.spacing == 0.1, "random colours keep a gap of a tenth of a radius"
    assert dataset.radius_bounds() == (0.08, 0.08)
    again = StudyCreate.model_validate(study.model_dump(mode="json"))
    assert again == study, "a dumped design must validate to the same design"


def test_constant_area_radius_shrinks_with_count():
    study = StudyCreate.model_validate(
        example(
            dataset={
                "image_size": 64,
                "counts": [1, 4, 9],
                "radius_mode": "constant_area",
                "dot_radius": 0.15,
            }
        )
    )
    dataset = study.dataset
    assert dataset.radius_for_count(1) == pytest.approx(0.15), "reference_count defaults to 1"
    assert dataset.radius_for_count(4) == pytest.approx(0.075)
    assert dataset.radius_for_count(9) == pytest.approx(0.05)
    assert dataset.radius_bounds() == pytest.approx((0.05, 0.15))


def test_constant_area_reference_count_sets_radius():
    study = StudyCreate.model_validate(
        example(
            dataset={
                "image_size": 64,
                "counts": [2, 4, 8],
                "radius_mode": "constant_area",
                "dot_radius": 0.08,
                "reference_count": 4,
            }
        )
    )
    assert study.dataset.radius_for_count(4) == pytest.approx(0.08)
    assert study.dataset.radius_for_count(8) == pytest.approx(0.08 / 2**0.5)


def test_constant_area_smallest_dot_must_be_countable():
    message = dots_error(counts=[2, 4], radius_mode="constant_area", image_size=32)
    assert message.startswith(
        "the dot radius with constant_area at 4 dots is 0.0400 of the width, 1.28 px"
    ), message
    assert "needs at least 2.5 px" in message, message


def test_constant_area_largest_dot_within_limit():
    message = dots_error(
        counts=[1, 4], radius_mode="constant_area", dot_radius=0.1, reference_count=4
    )
    assert "the dot radius with constant_area at 1 dot is 0.2000 of the width" in message, message
    assert "largest allowed radius 0.15" in message, message


def test_range_needs_radius_range_and_order():
    assert "set radius_range exactly when radius_mode is range" in dots_error(
        counts=[2], radius_mode="range"
    )
    assert "set radius_range exactly when radius_mode is range" in dots_error(
        counts=[2], radius_range=[0.08, 0.1]
    )
    with pytest.raises(ValidationError, match="must list the smaller radius first"):
        StudyCreate.model_validate(
            example(dataset={"radius_mode": "range", "radius_range": [0.12, 0.1]})
        )


def test_range_smallest_radius_must_be_countable():
    message = dots_error(counts=[2], radius_mode="range", radius_range=[0.05, 0.1])
    assert message.startswith("the smaller radius_range bound is 0.0500 of the width, 1.60 px"), (
        message
    )
    assert "use a larger lower bound" in message, message


def test_range_counts_that_do_not_fit_name_largest():
    message = dots_error(
        image_size=64, counts=[4, 16], radius_mode="range", radius_range=[0.04, 0.15]
    )
    assert message.startswith("counts [16] do not fit with dot radii drawn from"), message
    assert "at most 9 dots fit" in message, message


def test_spacing_counts_that_do_not_fit_name_largest():
    message = dots_error(image_size=64, counts=[2, 16], min_spacing=2.0)
    assert "dots need gaps of more than 2 radii" in message, message
    assert "at most 8 dots fit" in message, message


def test_reference_count_only_with_constant_area():
    message = dots_error(counts=[2], reference_count=3)
    assert "used only with radius_mode constant_area" in message, message


@pytest.mark.parametrize(
    ("colour_mode", "colours", "expected"),
    [
        ("random", ["#000000"], "colours has 1 entries with colour_mode random"),
        ("one", None, "colours has 0 entries with colour_mode one, which takes one colour"),
        ("one", ["#000000", "#ff0000"], "colours has 2 entries with colour_mode one"),
        ("palette", ["#000000"], "which takes two or more colours"),
    ],
)
def test_colours_match_colour_mode(colour_mode, colours, expected):
    message = dots_error(counts=[2], colour_mode=colour_mode, colours=colours)
    assert expected in message, message


@pytest.mark.parametrize(
    ("colours", "expected"),
    [
        (["red", "#000000"], "colour 'red' is not a hex colour; write each colour as #rrggbb"),
        (["#12345", "#000000"], "colour '#12345' is not a hex colour"),
        (["#00000g", "#000000"], "colour '#00000g' is not a hex colour"),
        (["#FF0000", "#ff0000"], "repeat a colour"),
        (["#e6e6e6", "#000000"], "colour #e6e6e6 is too pale: it is 0.098 darker than white"),
    ],
)
def test_palette_format_validated(colours, expected):
    with pytest.raises(ValidationError) as caught:
        StudyCreate.model_validate(example(dataset={"colour_mode": "palette", "colours": colours}))
    errors = caught.value.errors()
    assert errors[0]["loc"] == ("dataset", "dots", "colours"), errors[0]["loc"]
    assert expected in errors[0]["msg"], errors[0]["msg"]


def test_palette_accepted_and_normalized():
    study = StudyCreate.model_validate(
        example(dataset={"colour_mode": "palette", "colours": ["#FF0000", "#1f77b4", "#e5e5e5"]})
    )
    assert study.dataset.colours == ["#ff0000", "#1f77b4", "#e5e5e5"]
    rgb = study.dataset.rgb_colours()
    assert rgb is not None
    assert [channel for colour in rgb for channel in colour] == pytest.approx(
        [1.0, 0.0, 0.0, 31 / 255, 119 / 255, 180 / 255, 229 / 255, 229 / 255, 229 / 255]
    )
    assert study.dataset.spacing == 0.5, "one colour and palettes default to 0.5 radii"


def test_one_colour_needs_wider_spacing():
    message = dots_error(counts=[2], colour_mode="one", colours=["#000000"], min_spacing=0.3)
    assert "min_spacing 0.3 is too small for colour_mode one" in message, message
    assert "at least 0.5 radii" in message, message


@pytest.mark.parametrize(
    ("section", "values", "loc", "expected"),
    [
        ("dataset", {"counts": [True]}, ("dataset", "dots", "counts", 0), "valid integer"),
        ("dataset", {"weights": [True, 1]}, ("dataset", "dots", "weights", 0), "valid number"),
        (
            "dataset",
            {"radius_mode": "range", "radius_range": [0.05, True]},
            ("dataset", "dots", "radius_range", 1),
            "valid number",
        ),
        (
            "dataset",
            {"family": "pie", "values": [[5, 5, True, 5]]},
            ("dataset", "pie", "values", 0, 2),
            "valid integer",
        ),
        (
            "dataset",
            {"family": "combinations", "pin": {"feature": "size", "values": [True]}},
            ("dataset", "combinations", "pin", "values", 0),
            "valid integer",
        ),
        ("training", {"adam_betas": [False, 0.9]}, ("training", "adam_betas", 0), "valid number"),
    ],
)
def test_booleans_are_not_numbers(section, values, loc, expected):
    body = example()
    if "family" in values:
        body[section] = values
    else:
        body[section].update(values)
    with pytest.raises(ValidationError) as caught:
        StudyCreate.model_validate(body)
    [error] = caught.value.errors()
    assert error["loc"] == loc
    assert expected in error["msg"], error["msg"]


def test_numbers_in_lists_still_accepted():
    body = example(
        dataset={"counts": [2, 4], "weights": [1, 2.5]}, training={"adam_betas": [0, 0.9]}
    )
    study = StudyCreate.model_validate(body)
    assert study.dataset.weights == [1.0, 2.5]
    assert study.training.adam_betas == (0.0, 0.9)


def test_wgan_batch_smaller_than_critic_steps_rejected():
    with pytest.raises(ValidationError) as caught:
        RunSpec.model_validate(
            {
                "dataset": {"family": "dots", "counts": [2, 4]},
                "model": {"kind": "wgan_gp", "critic_steps": 5},
                "training": {"batch_size": 4, "steps": 10, "snapshot_every": 10},
            }
        )
    (error,) = caught.value.errors()
    assert error["ctx"]["field"] == "training.batch_size", error
    assert "at least 5" in error["msg"], error["msg"]
