"""Analyses with known results: distances, numerosity, modes, coverage, intervals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from biaslab.analysis.bootstrap import BOOTSTRAP_RESAMPLES, bootstrap, mean_estimate
from biaslab.analysis.combinations import coverage, recall_at_precision
from biaslab.analysis.distances import (
    KL_EPSILON,
    kl_divergence,
    probabilities,
    total_variation,
    wasserstein_1,
)
from biaslab.analysis.held_out import held_out_generated_share
from biaslab.analysis.modes import (
    additive_prediction,
    between_bins,
    between_share,
    enhancement_ratio,
)
from biaslab.analysis.numerosity import count_moments, fit_lognormal, slopes
from biaslab.analysis.results import RunResult
from biaslab.analysis.study import analyze_study
from biaslab.design import RunSpec, StudyCreate, expand_runs
from biaslab.design.combinations import CombinationsDataset
from biaslab.design.pie import PieDataset
from biaslab.families import Feature
from biaslab.families.combinations import cell_feature
from biaslab.families.dots import COUNT_FEATURE
from biaslab.families.pie import PieFamily
from tests.examples import EXAMPLE_STUDY

COUNTS = np.arange(1, 33, dtype=np.float64)


def counts_of(shares: dict[int, int]) -> np.ndarray:
    """Return count values: `shares[k]` samples of k dots each."""
    return np.concatenate([np.full(n, float(k)) for k, n in shares.items()])


def distribution(shares: dict[int, float]) -> np.ndarray:
    p = np.zeros(32)
    for k, share in shares.items():
        p[k - 1] = share
    return p


# Distances


def test_identical_distributions_have_distance_zero():
    p = distribution({2: 0.5, 4: 0.5})
    assert total_variation(p, p) == 0
    assert kl_divergence(p, p) == pytest.approx(0, abs=1e-12)
    assert wasserstein_1(p, p, COUNTS) == 0


def test_disjoint_distributions():
    p, q = distribution({2: 1.0}), distribution({5: 1.0})
    assert total_variation(p, q) == 1
    assert wasserstein_1(p, q, COUNTS) == pytest.approx(3)


def test_kl_uses_stated_smoothing():
    p, q = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    smoothed_p = (p + KL_EPSILON) / (1 + 2 * KL_EPSILON)
    smoothed_q = (q + KL_EPSILON) / (1 + 2 * KL_EPSILON)
    expected = float(np.sum(smoothed_p * np.log(smoothed_p / smoothed_q)))
    assert kl_divergence(p, q) == pytest.approx(expected)
    assert math.isfinite(kl_divergence(p, q)), "smoothing keeps an empty bin finite"
    assert kl_divergence(q, p) < kl_divergence(p, q)


def test_probabilities_ignore_unrecognized():
    histogram = COUNT_FEATURE.histogram(np.array([2.0, 2.0, 4.0, np.nan]))
    p = probabilities(histogram)
    assert p[1] == pytest.approx(2 / 3)
    assert p[3] == pytest.approx(1 / 3)
    assert histogram.unrecognized_share == 0.25


def test_distances_reject_different_bins():
    with pytest.raises(ValueError, match="cannot be compared"):
        total_variation(np.ones(3) / 3, np.ones(4) / 4)


# Numerosity


def test_count_moments_of_two_counts():
    moments = count_moments(distribution({2: 0.5, 4: 0.5}), COUNTS)
    assert moments.mean == pytest.approx(3)
    assert moments.sd == pytest.approx(1)
    assert moments.cv == pytest.approx(1 / 3)


def test_lognormal_fit_recovers_sigma():
    rng = np.random.default_rng(0)
    draws = np.clip(np.rint(rng.lognormal(mean=np.log(8), sigma=0.3, size=20_000)), 1, 32)
    counts = COUNT_FEATURE.histogram(draws).counts
    fit = fit_lognormal(np.asarray(counts), COUNTS)
    assert fit.sigma == pytest.approx(0.3, abs=0.03)
    assert fit.median == pytest.approx(8, rel=0.05)
    assert fit.total_variation < 0.05


def test_lognormal_fit_needs_two_counts():
    fit = fit_lognormal(np.asarray(COUNT_FEATURE.histogram(np.full(10, 3.0)).counts), COUNTS)
    assert math.isnan(fit.sigma)


def test_slopes_of_a_line():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([[1.0, 3.0, 5.0], [0.0, 0.0, 0.0]])
    assert slopes(x, y).tolist() == pytest.approx([2.0, 0.0])


# Several modes


def test_additive_prediction_is_weighted_mixture():
    two = distribution({1: 0.2, 2: 0.8})
    four = distribution({4: 0.6, 5: 0.4})
    prediction = additive_prediction([two, four], [3, 1])
    assert prediction == pytest.approx(0.75 * two + 0.25 * four)
    assert prediction.sum() == pytest.approx(1)


def test_additive_prediction_rejects_weight_mismatch():
    with pytest.raises(ValueError, match="3 weights for 2 distributions"):
        additive_prediction([np.ones(2), np.ones(2)], [1, 1, 1])


@pytest.mark.parametrize(
    ("trained", "between"),
    [([2, 4], [3]), ([2, 7], [3, 4, 5, 6]), ([2, 4, 7], [3, 5, 6]), ([3, 4], [])],
)
def test_between_bins(trained, between):
    mask = between_bins(COUNTS, trained)
    assert COUNTS[mask].tolist() == between


@pytest.mark.parametrize(
    ("trained", "between"),
    [([3, 4], [3.5]), ([3, 5], [3.5, 4, 4.5]), ([3, 3.5], []), ([8.5, 9], [])],
)
def test_between_bins_of_half_values(trained, between):
    centres = np.arange(1, 9.25, 0.5)
    assert centres[between_bins(centres, trained)].tolist() == between


def test_enhancement_index():
    observed = distribution({2: 0.25, 3: 0.5, 4: 0.25})
    predicted = distribution({2: 0.45, 3: 0.1, 4: 0.45})
    mask = between_bins(COUNTS, [2, 4])
    observed_between = between_share(observed, mask)
    predicted_between = between_share(predicted, mask)
    assert observed_between == pytest.approx(0.5)
    assert enhancement_ratio(observed_between, predicted_between) == pytest.approx(5)
    assert math.isnan(float(enhancement_ratio(np.float64(0.5), np.float64(0.0))))


# Combinations and shapes


def test_one_cell_generator_has_low_recall():
    counts = np.zeros(41, dtype=np.int64)
    counts[7] = 1000
    covered = coverage(counts)
    assert covered.recall == pytest.approx(1 / 40)
    assert covered.precision == 1.0
    assert covered.recall_at_precision == pytest.approx(1 / 40)


def test_uniform_generator_covers_every_cell():
    counts = np.full(11, 50, dtype=np.int64)
    counts[-1] = 0
    covered = coverage(counts)
    assert (covered.precision, covered.recall, covered.recall_at_precision) == (1.0, 1.0, 1.0)


def test_recall_at_precision_bounds_other_cells():
    # t = 1: 4 training cells, up to 5 other cells: precision 4/9. t = 10: 2 training cells,
    # no other cell can reach 10 samples: precision 1, recall 2/4.
    assert recall_at_precision(np.array([10, 10, 1, 1]), other=5, target_precision=0.9) == 0.5
    assert recall_at_precision(np.array([10, 10, 1, 1]), other=0, target_precision=0.9) == 1.0
    assert recall_at_precision(np.array([1, 1]), other=100, target_precision=0.9) == 0.0


def test_only_other_cells_give_zero_precision():
    counts = np.array([0, 0, 0, 30])
    covered = coverage(counts)
    assert (covered.precision, covered.recall, covered.recall_at_precision) == (0.0, 0.0, 0.0)


def test_held_out_generated_share():
    scores = {"held_out_share": 0.1, "held_out/a-b/red-blue": 1.0, "held_out/b-a/red-red": 0.0}
    assert held_out_generated_share(scores) == 0.5
    assert math.isnan(held_out_generated_share({"training_share": 1.0}))


# Bootstrap


def test_bootstrap_of_constant_values_is_the_value():
    estimate = mean_estimate([0.4, 0.4, 0.4])
    assert estimate.value == pytest.approx(0.4)
    assert estimate.low == pytest.approx(0.4)
    assert estimate.high == pytest.approx(0.4)
    assert estimate.seeds == 3


def test_bootstrap_interval_brackets_the_mean_and_repeats():
    values = [0.1, 0.3, 0.5, 0.9]
    first, second = mean_estimate(values), mean_estimate(values)
    assert first == second, "the bootstrap generator is seeded"
    assert first.value == pytest.approx(0.45)
    assert 0.1 <= first.low < 0.45 < first.high <= 0.9


def test_bootstrap_draws_stated_resamples():
    calls: list[int] = []

    def statistic(groups):
        calls.append(groups[0].shape[0])
        return groups[0].mean(axis=1)

    bootstrap([np.array([1.0, 2.0])], statistic)
    assert calls == [1, BOOTSTRAP_RESAMPLES]


def test_mean_estimate_leaves_out_nan():
    estimate = mean_estimate([0.2, math.nan, 0.4])
    assert estimate.value == pytest.approx(0.3)
    assert estimate.seeds == 2


# The whole study


def dots_run(index: int, counts: list[int], seed: int, generated: dict[int, int]) -> RunResult:
    spec = RunSpec.model_validate(
        {
            "dataset": {"family": "dots", "counts": counts},
            "model": {"kind": "vae"},
            "training": {"seed": seed},
        }
    )
    training = COUNT_FEATURE.histogram(counts_of({count: 100 for count in counts}))
    return RunResult(
        index=index,
        spec=spec,
        labels={"dataset": " and ".join(map(str, counts)), "seed": str(seed)},
        training={"count": training},
        generated={"count": COUNT_FEATURE.histogram(counts_of(generated))},
        step=100,
    )


def two_and_four_study() -> list[RunResult]:
    """Mixture runs that mostly make 3 dots, and controls that make their own count."""
    runs = []
    for seed in range(3):
        runs.append(dots_run(len(runs), [2, 4], seed, {2: 20, 3: 60 + seed, 4: 20}))
    for seed in range(3):
        runs.append(dots_run(len(runs), [2], seed, {1: 10, 2: 80, 3: 10}))
    for seed in range(3):
        runs.append(dots_run(len(runs), [4], seed, {3: 10 + seed, 4: 70, 5: 20}))
    return runs


def test_study_modes_compare_observed_with_prediction():
    analysis = analyze_study(two_and_four_study())
    assert len(analysis["modes"]) == 1
    modes = analysis["modes"][0]
    assert modes["runs"] == [0, 1, 2]
    assert modes["controls"] == [{"mode": 2, "runs": [3, 4, 5]}, {"mode": 4, "runs": [6, 7, 8]}]
    assert modes["between"] == ["3"]
    assert modes["most_likely"] == "3"
    assert modes["most_likely_between"] is True

    # Equal training weights: half of the {2} controls' share at 3 (0.1 in every seed) and
    # half of the {4} controls' mean share at 3 over seeds.
    four_at_3 = np.mean([(10 + seed) / (100 + seed) for seed in range(3)])
    expected_at_3 = 0.5 * 0.1 + 0.5 * four_at_3
    assert modes["prediction"][2]["value"] == pytest.approx(expected_at_3)
    assert modes["predicted_between"]["value"] == pytest.approx(expected_at_3)
    observed_at_3 = np.mean([(60 + seed) / (100 + seed) for seed in range(3)])
    assert modes["observed"][2]["value"] == pytest.approx(observed_at_3)
    ratio = modes["enhancement_ratio"]
    assert ratio["value"] == pytest.approx(observed_at_3 / expected_at_3)
    assert ratio["low"] <= ratio["value"] <= ratio["high"]
    assert ratio["seeds"] == 3
    assert modes["enhancement_difference"]["value"] == pytest.approx(observed_at_3 - expected_at_3)


def test_study_without_controls_reports_them_missing():
    runs = two_and_four_study()[:6]
    modes = analyze_study(runs)["modes"][0]
    assert modes["missing_controls"] == [4]
    assert modes["prediction"] is None
    assert modes["enhancement_ratio"] is None
    assert modes["observed"][2]["value"] > 0.5


def test_study_numerosity_of_single_count_runs():
    numerosity = analyze_study(two_and_four_study())["numerosity"]
    assert len(numerosity) == 1, "the {2} and {4} controls form one series"
    points = numerosity[0]["points"]
    assert [point["count"] for point in points] == [2, 4]
    assert points[0]["mean"]["value"] == pytest.approx(2.0)
    assert points[0]["sd"]["value"] == pytest.approx(math.sqrt(0.2))
    trend = numerosity[0]["trend"]["sd_slope"]
    assert trend["low"] <= trend["value"] <= trend["high"]


def test_study_distances_zero_when_generated_matches_training():
    run = dots_run(0, [3], 0, {3: 100})
    analysis = analyze_study([run])
    distances = analysis["runs"][0]["features"]["count"]
    assert distances["total_variation"] == 0
    assert distances["wasserstein_1"] == 0
    assert distances["kl_generated_training"] == pytest.approx(0, abs=1e-12)
    condition = analysis["conditions"][0]["features"]["count"]["total_variation"]
    assert condition == {"value": 0.0, "low": 0.0, "high": 0.0, "seeds": 1}


def test_study_analysis_is_strict_json():
    runs = two_and_four_study()
    runs.append(
        RunResult(index=9, spec=runs[0].spec, labels={}, training=runs[0].training, step=None)
    )
    analysis = analyze_study(runs)
    assert analysis["pending"] == [9]
    json.dumps(analysis, allow_nan=False)


def test_study_conditions_group_seeds():
    conditions = analyze_study(two_and_four_study())["conditions"]
    assert [condition["runs"] for condition in conditions] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert conditions[0]["labels"] == {"dataset": "2 and 4"}


def combinations_run(index: int, size: int, seed: int, hits: int) -> RunResult:
    """A run on `size` training cells whose samples fall in the first `hits` cells."""
    dataset = CombinationsDataset(combinations=size)
    spec = RunSpec(
        dataset=dataset, model=RunSpec.model_validate(_base()).model, training={"seed": seed}
    )
    feature = cell_feature(dataset.cells())
    generated = np.repeat(np.arange(hits, dtype=np.float64), 10)
    return RunResult(
        index=index,
        spec=spec,
        training={"cell": feature.histogram(np.arange(size, dtype=np.float64))},
        generated={"cell": feature.histogram(generated)},
        step=10,
    )


def _base() -> dict:
    return {key: value for key, value in EXAMPLE_STUDY.items() if key != "name"}


def test_study_combinations_curve_over_size():
    runs = [
        combinations_run(0, 10, 0, hits=10),
        combinations_run(1, 10, 1, hits=10),
        combinations_run(2, 20, 0, hits=5),
        combinations_run(3, 20, 1, hits=5),
    ]
    curves = analyze_study(runs)["combinations"]
    assert len(curves) == 1
    points = curves[0]["points"]
    assert [point["combinations"] for point in points] == [10, 20]
    assert points[0]["recall"]["value"] == 1.0
    assert points[1]["recall"]["value"] == 0.25
    assert points[1]["recall_at_precision"]["value"] == 0.25
    assert points[1]["precision"]["seeds"] == 2


def test_study_shapes_share_of_held_out():
    study = StudyCreate.model_validate(
        {
            **EXAMPLE_STUDY,
            "dataset": {
                "family": "shapes",
                "held_out": [{"shapes": ["circle", "square"], "colours": ["red", "blue"]}],
            },
        }
    )
    spec = expand_runs(study)[0].spec
    runs = [
        RunResult(
            index=seed,
            spec=spec.model_copy(
                update={"training": spec.training.model_copy(update={"seed": seed})}
            ),
            generated={"left_shape": COUNT_FEATURE.histogram(np.ones(3))},
            scores={"held_out_share": 0.01 * seed, "held_out/circle-square/red-blue": float(seed)},
            step=10,
        )
        for seed in range(2)
    ]
    shapes = analyze_study(runs)["shapes"]
    assert len(shapes) == 1
    assert shapes[0]["held_out_generated"]["value"] == 0.5
    assert shapes[0]["held_out_sample_share"]["value"] == pytest.approx(0.005)


# Pie runs with red-share histograms on the bins of an older version


# Red-share bins before the red share had a bin per half value: one per value 1..9.
OLD_RED_SHARE = Feature(
    name="red_share",
    title="Red share",
    centres=tuple(float(value) for value in range(1, 10)),
    labels=tuple(str(value) for value in range(1, 10)),
)
NEW_RED_SHARE = PieFamily().features(PieDataset())[3]


def pie_run(
    index: int, reds: list[int], seed: int, generated: np.ndarray, feature: Feature
) -> RunResult:
    """A pie run on red values `reds`, its histograms stored as JSON on `feature`'s bins."""
    spec = RunSpec.model_validate(
        {
            "dataset": {"family": "pie", "values": [[5, 5, 5, red] for red in reds]},
            "model": {"kind": "vae"},
            "training": {"seed": seed},
        }
    )
    training = feature.histogram(np.repeat(np.asarray(reds, dtype=np.float64), 100))
    return RunResult.from_json(
        index,
        spec.model_dump(mode="json"),
        labels={"dataset": " and ".join(map(str, reds)), "seed": str(seed)},
        training={"red_share": training.model_dump()},
        generated={"red_share": feature.histogram(generated).model_dump()},
        step=100,
    )


def red_share_study(bins_of: dict[int, Feature]) -> list[RunResult]:
    """Mixtures on red 3 with 4 and 3 with 9, and the controls of each, over two seeds.

    The mixtures generate 3.4 in a tenth of their samples; `bins_of` gives the bins of
    the runs stored by an older version (index -> feature), the others have today's.
    """
    conditions = [[3, 4], [3, 9], [3], [4], [9]]
    runs = []
    for reds in conditions:
        for seed in range(2):
            values = np.repeat(np.asarray(reds, dtype=np.float64), 90 // len(reds))
            if len(reds) > 1:
                values = np.concatenate([values, np.full(10, 3.4)])
            feature = bins_of.get(len(runs), NEW_RED_SHARE)
            runs.append(pie_run(len(runs), reds, seed, values, feature))
    return runs


def test_study_modes_of_old_red_share_bins():
    runs = red_share_study(dict.fromkeys(range(10), OLD_RED_SHARE))
    analysis = analyze_study(runs)
    json.dumps(analysis, allow_nan=False)
    modes = {tuple(entry["trained"]): entry for entry in analysis["modes"]}
    close = modes[(3.0, 4.0)]
    assert close["bins"] == [str(value) for value in range(1, 10)]
    assert close["between"] == []
    assert close["left_out"] == []
    assert len(close["observed"]) == 9
    assert close["enhancement_ratio"] is None
    # 3.4 lies in the old bin of 3.
    assert close["observed"][2]["value"] == pytest.approx(55 / 100)
    far = modes[(3.0, 9.0)]
    assert far["between"] == ["4", "5", "6", "7", "8"]
    assert far["observed_between"]["value"] == 0
    assert analysis["runs"][0]["features"]["red_share"]["total_variation"] >= 0


def test_study_modes_of_new_red_share_bins():
    modes = {
        tuple(entry["trained"]): entry for entry in analyze_study(red_share_study({}))["modes"]
    }
    close = modes[(3.0, 4.0)]
    assert close["between"] == ["3.5"]
    assert close["observed_between"]["value"] == pytest.approx(0.1)
    assert close["predicted_between"]["value"] == 0
    assert close["enhancement_ratio"]["value"] is None, "0.1 / 0 is undefined"
    assert close["enhancement_difference"]["value"] == pytest.approx(0.1)


def test_study_modes_leave_out_runs_on_other_bins():
    # Run 1 (a 3-with-4 mixture) and run 7 (a control on 4) were stored with the old bins.
    runs = red_share_study({1: OLD_RED_SHARE, 7: OLD_RED_SHARE})
    modes = {tuple(entry["trained"]): entry for entry in analyze_study(runs)["modes"]}
    close = modes[(3.0, 4.0)]
    assert close["left_out"] == [1, 7]
    assert close["runs"] == [0, 1]
    assert close["controls"] == [
        {"mode": [5, 5, 5, 3], "runs": [4, 5]},
        {"mode": [5, 5, 5, 4], "runs": [6]},
    ]
    assert close["between"] == ["3.5"]
    assert len(close["observed"]) == 17
    assert close["observed"][0]["seeds"] == 1
    assert close["prediction"][6]["seeds"] == 1


def test_study_modes_with_every_control_on_other_bins():
    runs = red_share_study({6: OLD_RED_SHARE, 7: OLD_RED_SHARE})
    modes = {tuple(entry["trained"]): entry for entry in analyze_study(runs)["modes"]}
    close = modes[(3.0, 4.0)]
    assert close["left_out"] == [6, 7]
    assert close["missing_controls"] == [[5, 5, 5, 4]]
    assert close["prediction"] is None
    assert close["enhancement_ratio"] is None
