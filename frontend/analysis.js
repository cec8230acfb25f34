// The analysis panel of the study page: prototype enhancement (observed against the additive
// prediction), numerosity, combinations, held-out shapes and distances, each estimate with
// its bootstrap interval over seeds, from GET /api/studies/{id}/analysis/figures.

import { clearError, getJson, showError } from "/static/api.js";
import { chartExportButtons, fileName } from "/static/chart_export.js";
import { renderFigure } from "/static/charts.js";

const byId = (id) => document.getElementById(id);

/** Write an estimate {value, low, high} as "v [low, high]", or "no value" without one. */
export function formatEstimate(estimate, digits = 3) {
  if (!estimate || typeof estimate.value !== "number") {
    return "no value";
  }
  const value = estimate.value.toFixed(digits);
  if (typeof estimate.low !== "number" || typeof estimate.high !== "number") {
    return value;
  }
  return `${value} [${estimate.low.toFixed(digits)}, ${estimate.high.toFixed(digits)}]`;
}

// Name a group of runs by the sweep labels they share, leaving out the seed.
function groupTitle(labels, runs) {
  const shown = Object.entries(labels || {})
    .filter(([axis]) => axis !== "seed")
    .map(([axis, label]) => `${axis} ${label}`);
  return shown.length ? shown.join(", ") : `runs ${runs.map((index) => index + 1).join(", ")}`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

// A table with a caption, a header row and rows of cell texts; the first cell heads its row.
function table(caption, headers, rows, testid) {
  const result = element("table", "data-table");
  result.dataset.testid = testid;
  result.append(element("caption", null, caption));
  const head = result.createTHead().insertRow();
  for (const text of headers) {
    const cell = element("th", null, text);
    cell.scope = "col";
    head.append(cell);
  }
  const body = result.createTBody();
  for (const cells of rows) {
    const row = body.insertRow();
    cells.forEach((text, position) => {
      if (position === 0) {
        const cell = element("th", null, text);
        cell.scope = "row";
        row.append(cell);
      } else {
        row.insertCell().textContent = text;
      }
    });
  }
  return result;
}

function chart(figure, key, label) {
  const block = element("div", "compare-chart-block");
  const node = element("div", "chart analysis-chart");
  node.setAttribute("role", "img");
  node.setAttribute("aria-label", label);
  node.dataset.key = key;
  block.append(node, chartExportButtons(node, fileName(key)));
  // Drawn once the block is in the page, so that Plotly can read its width.
  requestAnimationFrame(() => renderFigure(node, figure, key));
  return block;
}

function section(id, title, intro) {
  const box = byId(id);
  box.replaceChildren(element("h3", null, title));
  if (intro) {
    box.append(element("p", "hint", intro));
  }
  return box;
}

// ---- Sections ----

function showModes(studyId, entries, figures) {
  const box = byId("analysis-modes");
  if (!entries.length) {
    box.replaceChildren();
    return;
  }
  section(
    "analysis-modes",
    "Several modes: observed against the additive prediction",
    "The additive prediction is the mixture of the runs trained on each mode alone, " +
      "weighted as in training. The prototype-enhancement index is the observed share of " +
      "samples at values between the trained ones, divided by the predicted share; above 1, " +
      "the model makes the values between more often than the single-mode runs add up to.",
  );
  let drawn = 0;
  entries.forEach((entry, position) => {
    const title = `${groupTitle(entry.labels, entry.runs)}: ${entry.feature}`;
    const item = element("div", "analysis-item");
    item.dataset.testid = "modes-entry";
    item.append(element("h4", null, title));
    if (entry.observed && figures[drawn]) {
      item.append(chart(figures[drawn], `study-${studyId}-modes-${position + 1}`, `Observed and predicted ${entry.feature}`));
      drawn += 1;
    }
    const facts = element("dl", "analysis-facts");
    const add = (term, value, testid) => {
      const detail = element("dd", null, value);
      if (testid) {
        detail.dataset.testid = testid;
      }
      facts.append(element("dt", null, term), detail);
    };
    add("Prototype-enhancement index", formatEstimate(entry.enhancement_ratio, 2), "enhancement-index");
    add("Observed minus predicted share between", formatEstimate(entry.enhancement_difference));
    add("Observed share between", formatEstimate(entry.observed_between));
    add("Predicted share between", formatEstimate(entry.predicted_between));
    add("Values between the trained ones", (entry.between || []).join(", ") || "none");
    if (entry.most_likely !== undefined) {
      add("Most likely value", `${entry.most_likely}${entry.most_likely_between ? " (between the trained values)" : ""}`);
    }
    if (entry.missing_controls?.length) {
      const modes = entry.missing_controls.map((mode) => JSON.stringify(mode)).join(" or ");
      const reason = entry.left_out?.length
        ? "has recognized samples on the bins analysed here"
        : "has recognized samples";
      add("Missing controls", `no run trained on ${modes} alone ${reason}, so there is no prediction`);
    }
    if (entry.left_out?.length) {
      add(
        "Runs left out",
        `runs ${entry.left_out.map((index) => index + 1).join(", ")}: their histograms have other bins than the ones analysed here, as after an upgrade that changed the feature's bins`,
        "analysis-left-out",
      );
    }
    item.append(facts);
    box.append(item);
  });
}

function showNumerosity(studyId, series, figures) {
  const box = byId("analysis-numerosity");
  if (!series.length) {
    box.replaceChildren();
    return;
  }
  section(
    "analysis-numerosity",
    "Numerosity: generated counts for each trained count",
    "Mean, standard deviation and coefficient of variation of the generated count, a " +
      "log-normal fit, and the slope of the spread against the trained count.",
  );
  series.forEach((item, position) => {
    const title = groupTitle(item.labels, item.runs);
    if (figures[position]) {
      box.append(chart(figures[position], `study-${studyId}-numerosity-${position + 1}`, `Generated counts against trained counts, ${title}`));
    }
    const rows = item.points.map((point) => [
      String(point.count),
      String(point.runs.length),
      formatEstimate(point.mean, 2),
      formatEstimate(point.sd, 2),
      formatEstimate(point.cv, 2),
      formatEstimate(point.lognormal.sigma, 2),
      formatEstimate(point.lognormal.total_variation, 2),
    ]);
    box.append(
      table(
        `${title}. Slope of the standard deviation over k: ${formatEstimate(item.trend.sd_slope)}; of the coefficient of variation: ${formatEstimate(item.trend.cv_slope)}`,
        ["Trained count", "Runs", "Mean", "SD", "CV", "Log-normal sigma", "Fit total variation"],
        rows,
        "numerosity-table",
      ),
    );
  });
}

function showCombinations(studyId, curves, figures) {
  const box = byId("analysis-combinations");
  if (!curves.length) {
    box.replaceChildren();
    return;
  }
  section(
    "analysis-combinations",
    "Combinations: precision and recall against the training cells",
    null,
  );
  curves.forEach((curve, position) => {
    const title = groupTitle(curve.labels, curve.runs);
    if (figures[position]) {
      box.append(chart(figures[position], `study-${studyId}-combinations-${position + 1}`, `Precision and recall against training combinations, ${title}`));
    }
    const rows = curve.points.map((point) => [
      String(point.combinations),
      formatEstimate(point.precision),
      formatEstimate(point.recall),
      formatEstimate(point.recall_at_precision),
    ]);
    box.append(
      table(title, ["Training combinations", "Precision", "Recall", `Recall at precision ${curve.target_precision}`], rows, "combinations-table"),
    );
  });
}

function showShapes(entries) {
  const box = byId("analysis-shapes");
  if (!entries.length) {
    box.replaceChildren();
    return;
  }
  section("analysis-shapes", "Shapes: held-out combinations", null);
  const rows = entries.map((entry) => [
    groupTitle(entry.labels, entry.runs),
    formatEstimate(entry.held_out_generated),
    formatEstimate(entry.held_out_sample_share),
    formatEstimate(entry.training_sample_share),
  ]);
  box.append(
    table("Share of the held-out combinations generated, and of samples in held-out and training combinations", ["Condition", "Held-out combinations generated", "Samples in held-out combinations", "Samples in training combinations"], rows, "shapes-table"),
  );
}

function showDistances(conditions, methods) {
  const box = byId("analysis-distances");
  if (!conditions.length) {
    box.replaceChildren();
    return;
  }
  const epsilon = methods.kl_smoothing.epsilon;
  section(
    "analysis-distances",
    "Distance between generated and training distributions",
    `Over recognized samples. KL in nats after adding ${epsilon} to every bin's probability and renormalizing; Wasserstein-1 on the bin centres, for ordered features only.`,
  );
  const rows = [];
  for (const condition of conditions) {
    for (const [feature, values] of Object.entries(condition.features)) {
      rows.push([
        `${groupTitle(condition.labels, condition.runs)}: ${feature}`,
        formatEstimate(values.total_variation),
        formatEstimate(values.kl_generated_training),
        formatEstimate(values.kl_training_generated),
        formatEstimate(values.wasserstein_1),
        formatEstimate(values.unrecognized_share),
      ]);
    }
  }
  box.append(
    table("Mean over seeds with bootstrap intervals", ["Condition and feature", "Total variation", "KL(generated ‖ training)", "KL(training ‖ generated)", "Wasserstein-1", "Unrecognized share"], rows, "distances-table"),
  );
}

function describeMethods(analysis) {
  const intervals = analysis.methods.intervals;
  const pending = analysis.pending.length
    ? ` Runs without a snapshot yet: ${analysis.pending.map((index) => index + 1).join(", ")}.`
    : "";
  const step = analysis.step === null ? "the newest snapshot of each run" : `each run's newest snapshot at or before step ${analysis.step}`;
  return `Computed from ${step}. Intervals: ${Math.round(intervals.confidence * 100)}% ${intervals.method} (${intervals.resamples} resamples).${pending}`;
}

/**
 * Load and draw the analyses at `step` (null: each run's newest snapshot). `isCurrent`
 * returns false once a newer request has started, and then nothing is drawn.
 */
export async function showAnalysis(studyId, step, isCurrent = () => true) {
  const query = step === null ? "" : `?step=${step}`;
  let body;
  try {
    body = await getJson(`/api/studies/${studyId}/analysis/figures${query}`);
  } catch (error) {
    showError(byId("analysis-error"), error);
    return;
  }
  if (!isCurrent()) {
    return;
  }
  clearError(byId("analysis-error"));
  const { analysis, figures } = body;
  byId("analysis-methods").textContent = describeMethods(analysis);
  byId("analysis").dataset.step = step === null ? "" : String(step);
  showModes(studyId, analysis.modes, figures.modes);
  showNumerosity(studyId, analysis.numerosity, figures.numerosity);
  showCombinations(studyId, analysis.combinations, figures.combinations);
  showShapes(analysis.shapes);
  showDistances(analysis.conditions, analysis.methods);
  const empty = [analysis.modes, analysis.numerosity, analysis.combinations, analysis.shapes, analysis.conditions].every((part) => !part.length);
  byId("analysis-empty").hidden = !empty;
}
