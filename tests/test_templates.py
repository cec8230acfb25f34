"""Templates: every preset builds a valid study with the stated number of runs."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from biaslab.analysis.results import RunResult
from biaslab.analysis.study import analyze_study
from biaslab.design import StudyCreate, expand_runs, run_count
from biaslab.families import family_for
from biaslab.presets import get_preset
from biaslab.templates import TEMPLATE_PRESETS, TEMPLATES, get_template

EXPECTED_TEMPLATES = [
    "single-count",
    "counts-2-7",
    "counts-2-4",
    "red-share",
    "combinations",
    "held-out-shapes",
]


def test_one_template_per_finding():
    assert list(TEMPLATES) == EXPECTED_TEMPLATES


@pytest.mark.parametrize("name", EXPECTED_TEMPLATES)
@pytest.mark.parametrize("preset", TEMPLATE_PRESETS)
def test_preset_expands_to_stated_runs(name, preset):
    template = get_template(name)
    study = template.study(preset)
    runs = expand_runs(study)
    assert len(runs) == template.run_count(preset)
    assert run_count(study) == template.run_count(preset)
    again = StudyCreate.model_validate(study.model_dump(mode="json"))
    assert again == study, "the design survives a round trip through JSON"
    sizes = {run.spec.dataset.image_size for run in runs}
    assert sizes == ({32} if preset == "quick" else {64})


@pytest.mark.parametrize("name", EXPECTED_TEMPLATES)
def test_quick_preset_uses_quick_model_presets(name):
    for run in expand_runs(get_template(name).study("quick")):
        preset = get_preset(run.spec.model.kind, "quick")
        assert run.spec.model == preset.model
        assert run.spec.training.model_dump(exclude={"seed"}) == preset.training.model_dump(
            exclude={"seed"}
        )


@pytest.mark.parametrize("name", EXPECTED_TEMPLATES)
def test_full_preset_uses_paper_model_presets(name):
    for run in expand_runs(get_template(name).study("full")):
        preset = get_preset(run.spec.model.kind, "paper")
        assert run.spec.model == preset.model
        assert run.spec.training.steps == preset.training.steps


def test_two_four_quick_runs():
    runs = expand_runs(get_template("counts-2-4").study("quick"))
    kinds = {run.spec.model.kind for run in runs}
    assert kinds == {"vae", "wgan_gp"}
    conditions = {(run.spec.model.kind, tuple(run.spec.dataset.counts)): set() for run in runs}
    for run in runs:
        conditions[(run.spec.model.kind, tuple(run.spec.dataset.counts))].add(
            run.spec.training.seed
        )
    assert sorted(conditions) == [
        ("vae", (2,)),
        ("vae", (2, 4)),
        ("vae", (4,)),
        ("wgan_gp", (2,)),
        ("wgan_gp", (2, 4)),
        ("wgan_gp", (4,)),
    ]
    assert all(seeds == {0, 1, 2} for seeds in conditions.values())
    assert runs[0].labels == {"model": "VAE", "dataset": "2 and 4", "seed": "0"}


def test_red_share_template_pairs_and_controls():
    runs = expand_runs(get_template("red-share").study("quick"))
    red_values = {tuple(entry[3] for entry in run.spec.dataset.values) for run in runs}
    assert red_values == {(3, 4), (3, 9), (3,), (4,), (9,)}


def red_share_results(generate: Callable[[list[int]], np.ndarray]) -> list[RunResult]:
    """Return the quick red-share study's runs, generating the red values `generate` returns.

    `generate` takes a run's trained red values and returns its generated values on the
    1-9 scale. Training histograms hold 500 images per trained value.
    """
    results = []
    for index, run in enumerate(expand_runs(get_template("red-share").study("quick"))):
        design = run.spec.dataset
        red = {feature.name: feature for feature in family_for(design).features(design)}[
            "red_share"
        ]
        trained = [entry[3] for entry in design.values]
        results.append(
            RunResult(
                index=index,
                spec=run.spec,
                labels=run.labels,
                training={"red_share": red.histogram(np.repeat(np.asarray(trained, float), 500))},
                generated={"red_share": red.histogram(generate(trained))},
                step=100,
            )
        )
    return results


def copies_with_spill(trained: list[int]) -> np.ndarray:
    """Return what a model that copies its training set shows through a probe that reads
    2% of images 0.4 low (one half bin), for 1,000 images per trained value."""
    return np.concatenate([np.repeat([value, value - 0.4], [980, 20]) for value in trained])


def modes_by_trained(results: list[RunResult]) -> dict[tuple[float, ...], dict]:
    entries = analyze_study(results)["modes"]
    assert {entry["feature"] for entry in entries} == {"red_share"}
    return {tuple(entry["trained"]): entry for entry in entries}


def test_red_share_index_above_one():
    def generate(trained: list[int]) -> np.ndarray:
        if trained == [3, 4]:
            return np.repeat([3.0, 3.5, 4.0], [300, 400, 300])
        return copies_with_spill(trained)

    close = modes_by_trained(red_share_results(generate))[(3.0, 4.0)]
    assert close["between"] == ["3.5"]
    assert close["missing_controls"] == []
    assert close["left_out"] == []
    assert close["most_likely"] == "3.5"
    assert close["most_likely_between"] is True
    assert close["observed_between"]["value"] == pytest.approx(0.4)
    # Half of the 0.4 controls' 2% read 0.4 low lands in 3.5: 1% predicted.
    assert close["predicted_between"]["value"] == pytest.approx(0.01)
    assert close["enhancement_ratio"]["value"] == pytest.approx(40)
    assert close["enhancement_ratio"]["value"] > 1


def test_red_share_copies_not_enhanced():
    modes = modes_by_trained(red_share_results(copies_with_spill))
    assert sorted(modes) == [(3.0, 4.0), (3.0, 9.0)]
    assert modes[(3.0, 9.0)]["between"] == [f"{step / 2:g}" for step in range(7, 18)]
    for trained, entry in modes.items():
        assert entry["enhancement_ratio"]["value"] == pytest.approx(1), trained
        assert entry["enhancement_difference"]["value"] == pytest.approx(0, abs=1e-12), trained


def test_red_share_exact_copies_undefined():
    # Generated equals training: no sample between, so the ratio is undefined (0 / 0).
    modes = modes_by_trained(
        red_share_results(lambda trained: np.repeat(np.asarray(trained, float), 500))
    )
    for trained, entry in modes.items():
        assert entry["observed_between"]["value"] == 0, trained
        assert entry["enhancement_difference"]["value"] == 0, trained
        assert entry["enhancement_ratio"]["value"] is None, trained


def test_combinations_template_sizes():
    runs = expand_runs(get_template("combinations").study("full"))
    assert sorted({run.spec.dataset.combinations for run in runs}) == [10, 20, 40, 80, 160]


def test_shapes_template_holds_out_one_pair():
    spec = expand_runs(get_template("held-out-shapes").study("quick"))[0].spec
    assert spec.dataset.held_out_combinations() == [("circle", "square", "red", "blue")]


def test_template_listing_is_json():
    listing = [template.to_json() for template in TEMPLATES.values()]
    json.dumps(listing)
    two_four = listing[EXPECTED_TEMPLATES.index("counts-2-4")]
    quick = two_four["presets"][0]
    assert (quick["name"], quick["runs"], quick["seeds"]) == ("quick", 18, [0, 1, 2])
    assert quick["models"] == ["vae", "wgan_gp"]
    assert two_four["shows"]


def test_unknown_template_and_preset_rejected():
    with pytest.raises(KeyError, match="template 'nope' does not exist"):
        get_template("nope")
    with pytest.raises(KeyError, match="has no preset 'paper'; use one of"):
        get_template("counts-2-4").study("paper")
