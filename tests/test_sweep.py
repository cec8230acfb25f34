"""Sweep axes: expansion into runs, run counts, the cap and invalid values."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from biaslab.design import (
    MAX_RUNS_PER_STUDY,
    StudyCreate,
    design_points,
    expand,
    expand_runs,
    run_count,
    varying_fields,
)
from biaslab.store.db import make_engine, make_sessionmaker, session_scope
from biaslab.store.migrate import upgrade
from biaslab.store.studies import create_study, run_axis_values
from tests.examples import EXAMPLE_STUDY


def study_with(*axes: dict) -> dict:
    body = copy.deepcopy(EXAMPLE_STUDY)
    body["sweep"] = list(axes)
    return body


def sweep_message(body: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        StudyCreate.model_validate(body)
    errors = caught.value.errors()
    assert [error["loc"] for error in errors] == [("sweep",)], errors
    return errors[0]["msg"]


def test_no_sweep_gives_the_study_run():
    study = StudyCreate.model_validate(EXAMPLE_STUDY)
    runs = expand_runs(study)
    assert len(runs) == 1
    assert runs[0].index == 0
    assert runs[0].values == {}
    assert runs[0].spec == study.base_run()
    assert run_count(study) == 1


def test_stored_design_without_sweep_validates():
    stored = StudyCreate.model_validate(EXAMPLE_STUDY).model_dump(mode="json")
    del stored["sweep"]
    study = StudyCreate.model_validate(stored)
    assert study.sweep == []
    assert len(design_points(stored)) == 1
    assert design_points(stored)[0].values == {}


def test_counts_by_seeds_expand_in_product_order():
    body = study_with(
        {"path": "dataset.counts", "values": [[2, 4], [2], [4]]},
        {"name": "seed", "path": "training.seed", "values": [0, 1]},
    )
    runs = expand_runs(StudyCreate.model_validate(body))
    got = [(run.spec.dataset.counts, run.spec.training.seed) for run in runs]
    assert got == [([2, 4], 0), ([2, 4], 1), ([2], 0), ([2], 1), ([4], 0), ([4], 1)]
    assert [run.index for run in runs] == list(range(6))
    assert runs[3].values == {"dataset.counts": [2], "seed": 1}
    assert runs[3].labels == {"dataset.counts": "[2]", "seed": "1"}


def test_expanded_runs_keep_the_other_fields():
    body = study_with({"path": "model.z_dim", "values": [8, 16]})
    for spec in expand(StudyCreate.model_validate(body)):
        assert spec.dataset.counts == [2, 4]
        assert spec.training.learning_rate == 0.001
        assert spec.model.architecture == "conv"
    assert [spec.model.z_dim for spec in expand(StudyCreate.model_validate(body))] == [8, 16]


def test_each_run_validates_alone():
    body = study_with({"path": "training.learning_rate", "values": [1e-3, 1e-4]})
    for run in expand_runs(StudyCreate.model_validate(body)):
        again = type(run.spec).model_validate(run.spec.model_dump(mode="json"))
        assert again == run.spec


def test_axis_without_path_sets_model_and_training():
    wgan = {"model": {"kind": "wgan_gp", "z_dim": 64}, "training.learning_rate": 1e-4}
    vae = {"model": {"kind": "vae", "z_dim": 32}, "training.learning_rate": 1e-3}
    body = study_with(
        {"name": "model", "values": [vae, wgan], "labels": ["VAE", "WGAN-GP"]},
        {"name": "seed", "path": "training.seed", "values": [0, 1]},
    )
    runs = expand_runs(StudyCreate.model_validate(body))
    kinds = [(run.spec.model.kind, run.spec.training.learning_rate) for run in runs]
    assert kinds == [("vae", 1e-3), ("vae", 1e-3), ("wgan_gp", 1e-4), ("wgan_gp", 1e-4)]
    assert runs[2].labels == {"model": "WGAN-GP", "seed": "0"}


def test_later_axis_may_refine_an_earlier_one():
    body = study_with(
        {"path": "model", "values": [{"kind": "vae"}, {"kind": "wgan_gp"}], "labels": ["v", "w"]},
        {"path": "model.z_dim", "values": [8, 16]},
    )
    runs = expand(StudyCreate.model_validate(body))
    assert [(spec.model.kind, spec.model.z_dim) for spec in runs] == [
        ("vae", 8),
        ("vae", 16),
        ("wgan_gp", 8),
        ("wgan_gp", 16),
    ]


def test_later_axis_replacing_an_earlier_one_rejected():
    message = sweep_message(
        study_with(
            {"path": "model.z_dim", "values": [8, 16]},
            {"path": "model", "values": [{"kind": "vae"}]},
        )
    )
    assert "sweep[1] sets model, which replaces model.z_dim set by sweep[0]" in message


def test_run_count_multiplies_axis_lengths():
    body = study_with(
        {"path": "dataset.counts", "values": [[1], [2], [3]]},
        {"path": "model.architecture", "values": ["fc", "conv"]},
        {"path": "training.seed", "values": [0, 1, 2, 3]},
    )
    assert run_count(body) == 24
    assert run_count(StudyCreate.model_validate(body)) == 24
    assert len(expand(StudyCreate.model_validate(body))) == 24


def test_run_count_of_draft_over_cap():
    body = study_with({"path": "training.seed", "values": list(range(300))})
    body["sweep"].append({"path": "model.z_dim", "values": [8, 16]})
    assert run_count(body) == 600


def test_cap_rejected_with_count_and_cap():
    body = study_with(
        {"path": "training.seed", "values": list(range(300))},
        {"path": "model.z_dim", "values": [8, 16]},
    )
    message = sweep_message(body)
    assert "600 runs" in message
    assert f"the {MAX_RUNS_PER_STUDY} runs a study may have" in message


def test_cap_itself_accepted():
    body = study_with({"path": "training.seed", "values": list(range(MAX_RUNS_PER_STUDY))})
    assert len(expand(StudyCreate.model_validate(body))) == MAX_RUNS_PER_STUDY


def test_invalid_value_names_axis_value_and_reason():
    body = study_with({"path": "dataset.counts", "values": [[2, 4], [0]]})
    message = sweep_message(body)
    assert "axis value dataset.counts = [0] makes run 1 invalid" in message
    assert "dataset.counts[0]" in message
    assert "greater than or equal to 1" in message
    assert "(1 of 2 runs are invalid)" in message


def test_value_invalid_with_another_field_names_its_axis():
    body = study_with({"name": "steps", "path": "training.steps", "values": [100, 3000]})
    message = sweep_message(body)
    assert "axis value steps = 100 makes run 0 invalid" in message
    assert "snapshot_every 250 is larger than steps 100" in message


def test_unknown_field_rejected():
    message = sweep_message(study_with({"path": "model.depth", "values": [3]}))
    assert "model.depth" in message
    assert "Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("axis", "expected"),
    [
        ({"path": "seed", "values": [1]}, "String should match pattern"),
        ({"path": "training.seed", "values": []}, "at least 1 item"),
        ({"path": "training.seed", "values": [1, 1]}, "values[1] 1 repeats values[0]"),
        ({"values": [{"training.seed": 1}]}, "an axis without a path needs a name"),
        ({"name": "x", "values": [3]}, "takes objects that map field paths to values"),
        ({"name": "x", "values": [{"seed": 3}]}, "'seed', which is not a field path"),
        (
            {"name": "x", "values": [{"model": {}, "model.z_dim": 3}]},
            "sets both model and model.z_dim",
        ),
        (
            {"path": "training.seed", "values": [1, 2], "labels": ["a"]},
            "labels has 1 entries but values has 2",
        ),
    ],
)
def test_malformed_axis_rejected(axis, expected):
    with pytest.raises(ValidationError) as caught:
        StudyCreate.model_validate(study_with(axis))
    assert expected in str(caught.value)


def test_repeated_axis_names_rejected():
    message = sweep_message(
        study_with(
            {"name": "a", "path": "training.seed", "values": [1]},
            {"name": "a", "path": "model.z_dim", "values": [8]},
        )
    )
    assert "sweep[1] has the name 'a' of sweep[0]" in message


def test_varying_fields_lists_only_differences():
    body = study_with(
        {"path": "dataset.counts", "values": [[2, 4], [2]]},
        {"path": "training.seed", "values": [0, 1]},
    )
    specs = expand(StudyCreate.model_validate(body))
    assert varying_fields(specs) == ["dataset.counts", "training.seed"]
    assert varying_fields(specs[:1]) == []


def test_store_numbers_runs_and_keeps_axis_values(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    body = study_with(
        {"path": "dataset.counts", "values": [[2, 4], [2]]},
        {"name": "seed", "path": "training.seed", "values": [0, 1]},
    )
    with session_scope(sessions) as session:
        study = create_study(session, StudyCreate.model_validate(body))
        runs = sorted(study.runs, key=lambda run: run.index)
        assert [run.index for run in runs] == [0, 1, 2, 3]
        assert [run.spec["dataset"]["counts"] for run in runs] == [[2, 4], [2, 4], [2], [2]]
        assert [run.spec["training"]["seed"] for run in runs] == [0, 1, 0, 1]
        axes = run_axis_values(study)
        assert axes[2].labels == {"dataset.counts": "[2]", "seed": "0"}
        assert axes[3].values == {"dataset.counts": [2], "seed": 1}
    engine.dispose()
