// The comparison of a study's runs: one step slider that drives every panel, overlaid
// histograms grouped by a sweep axis, the parameters that differ between runs, a run's
// histogram over steps as a heatmap, and the analysis panel.
//
// The slider sends a "biaslab:step" event on document with {step, following}, which the
// run cards follow too; study.js sends "biaslab:snapshot" when a new snapshot arrives.

import { clearError, getJson, showError } from "/static/api.js";
import { chartExportButtons, fileName } from "/static/chart_export.js";
import { renderFigure } from "/static/charts.js";
import { showAnalysis } from "/static/analysis.js";

const byId = (id) => document.getElementById(id);
// Each refresh recomputes the analyses with their bootstrap intervals, so during training
// the views reload at most this often however many runs send snapshots.
const REFRESH_DELAY_MS = 2000;

const state = {
  studyId: null,
  steps: [],
  // True while the slider is at its right end: the views show each run's newest snapshot.
  following: true,
  step: null,
  groupBy: "run",
  heatmapRun: null,
  runs: [],
  // Counts requests, so that only the response to the newest one is drawn.
  request: 0,
  refreshTimer: null,
};

function stepQuery() {
  return state.following || state.step === null ? "" : `step=${state.step}`;
}

function shownStep() {
  return state.following ? state.steps.at(-1) ?? null : state.step;
}

// ---- Step slider ----

function updateSlider() {
  const slider = byId("study-step");
  slider.max = String(Math.max(state.steps.length - 1, 0));
  const step = shownStep();
  const index = step === null ? 0 : state.steps.indexOf(step);
  slider.value = String(index < 0 ? state.steps.length - 1 : index);
  slider.disabled = state.steps.length < 2;
  byId("study-step-label").textContent = step === null ? "no snapshot yet" : `step ${step}`;
  byId("compare-follow").textContent = state.following && state.steps.length > 1
    ? "following the newest snapshots"
    : "";
}

function onSlider() {
  const index = Number(byId("study-step").value);
  state.following = index >= state.steps.length - 1;
  state.step = state.steps[index] ?? null;
  updateSlider();
  document.dispatchEvent(
    new CustomEvent("biaslab:step", { detail: { step: shownStep(), following: state.following } }),
  );
  refresh();
}

// ---- Parameters that differ ----

function formatParameter(value) {
  if (value === null || value === undefined) {
    return "—";
  }
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function showVarying(varying, runs) {
  const box = byId("varying");
  if (!varying.length) {
    box.replaceChildren();
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = runs.length > 1 ? "The runs share every parameter." : "";
    box.append(note);
    return;
  }
  const table = document.createElement("table");
  table.className = "data-table";
  table.dataset.testid = "varying-table";
  const caption = document.createElement("caption");
  caption.textContent = "Parameters that differ between runs";
  const head = table.createTHead().insertRow();
  for (const text of ["Run", ...varying.map((field) => field.path)]) {
    const cell = document.createElement("th");
    cell.scope = "col";
    cell.textContent = text;
    head.append(cell);
  }
  const body = table.createTBody();
  for (const run of runs) {
    const row = body.insertRow();
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = `Run ${run.index + 1}`;
    row.append(name);
    for (const field of varying) {
      row.insertCell().textContent = formatParameter(field.values[String(run.index)]);
    }
  }
  table.prepend(caption);
  box.replaceChildren(table);
}

// ---- Overlaid histograms ----

function chartBlock(container, key, title) {
  let block = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (block) {
    return block.querySelector(".chart");
  }
  block = document.createElement("div");
  block.className = "compare-chart-block";
  block.dataset.key = key;
  const chart = document.createElement("div");
  chart.className = "chart compare-chart";
  chart.setAttribute("role", "img");
  chart.setAttribute("aria-label", title);
  block.append(chart, chartExportButtons(chart, fileName(`study-${state.studyId}-${key}`)));
  container.append(block);
  return chart;
}

function showOverlays(features, step) {
  const container = byId("overlay-charts");
  for (const feature of features) {
    const chart = chartBlock(container, `overlay-${feature.name}`, `Generated ${feature.title} of every run`);
    chart.dataset.testid = "overlay-chart";
    chart.dataset.feature = feature.name;
    chart.dataset.step = step === null ? "" : String(step);
    renderFigure(chart, feature.figure, `overlay-${feature.name}-${state.groupBy}`);
    const block = chart.parentElement;
    let note = block.querySelector(".left-out");
    if (feature.left_out.length) {
      if (!note) {
        note = document.createElement("p");
        note.className = "left-out muted";
        block.append(note);
      }
      note.textContent = `Left out (other bins): runs ${feature.left_out.map((i) => i + 1).join(", ")}`;
    } else if (note) {
      note.remove();
    }
  }
}

// ---- Heatmap of one run ----

function runTitle(run) {
  const labels = Object.entries(run.labels).map(([axis, label]) => `${axis} ${label}`).join(", ");
  return `Run ${run.index + 1}${labels ? ` (${labels})` : ""}`;
}

function fillHeatmapRuns(runs) {
  const select = byId("heatmap-run");
  if (select.options.length === runs.length) {
    return;
  }
  select.replaceChildren(
    ...runs.map((run) => {
      const option = document.createElement("option");
      option.value = String(run.id);
      option.textContent = runTitle(run);
      return option;
    }),
  );
  if (state.heatmapRun === null && runs.length) {
    state.heatmapRun = runs[0].id;
  }
  select.value = String(state.heatmapRun);
}

async function showHeatmaps(request) {
  if (state.heatmapRun === null) {
    return;
  }
  const query = stepQuery();
  const body = await getJson(`/api/runs/${state.heatmapRun}/heatmaps${query ? `?${query}` : ""}`);
  if (request !== state.request) {
    return;
  }
  const container = byId("heatmap-charts");
  for (const feature of body.features) {
    const chart = chartBlock(container, `heatmap-${feature.name}`, `${feature.title} of one run over steps`);
    chart.dataset.testid = "heatmap-chart";
    chart.dataset.runId = String(state.heatmapRun);
    renderFigure(chart, feature.figure, `heatmap-${feature.name}`);
  }
}

// ---- Loading ----

function fillGroups(axes) {
  const select = byId("compare-group");
  if (select.options.length === axes.length + 1) {
    return;
  }
  const options = [["run", "each run"], ...axes.map((axis) => [axis.name, axis.name])];
  select.replaceChildren(
    ...options.map(([value, text]) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = text;
      return option;
    }),
  );
  select.value = state.groupBy;
}

async function refresh() {
  state.request += 1;
  const request = state.request;
  const query = new URLSearchParams({ group_by: state.groupBy });
  if (!state.following && state.step !== null) {
    query.set("step", String(state.step));
  }
  try {
    const body = await getJson(`/api/studies/${state.studyId}/compare?${query}`);
    if (request !== state.request) {
      return;
    }
    clearError(byId("compare-error"));
    state.steps = body.steps;
    state.runs = body.runs;
    updateSlider();
    fillGroups(body.axes);
    fillHeatmapRuns(body.runs);
    showVarying(body.varying, body.runs);
    showOverlays(body.features, shownStep());
    await Promise.all([
      showHeatmaps(request),
      showAnalysis(state.studyId, state.following ? null : state.step, () => request === state.request),
    ]);
  } catch (error) {
    showError(byId("compare-error"), error);
  }
}

function scheduleRefresh() {
  if (state.refreshTimer !== null) {
    return;
  }
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    refresh();
  }, REFRESH_DELAY_MS);
}

function showExportLinks(studyId) {
  byId("export-csv").href = `/api/studies/${studyId}/export.csv`;
  byId("export-json").href = `/api/studies/${studyId}/export.json`;
  byId("export-bundle").href = `/api/studies/${studyId}/bundle`;
}

/** Show the comparison and analysis panels of a study and keep them current. */
export function startCompare(study) {
  state.studyId = study.id;
  byId("compare").hidden = false;
  byId("analysis").hidden = false;
  showExportLinks(study.id);
  byId("study-step").addEventListener("input", onSlider);
  byId("compare-group").addEventListener("change", (event) => {
    state.groupBy = event.target.value;
    refresh();
  });
  byId("heatmap-run").addEventListener("change", (event) => {
    state.heatmapRun = Number(event.target.value);
    byId("heatmap-charts").replaceChildren();
    refresh();
  });
  document.addEventListener("biaslab:snapshot", scheduleRefresh);
  return refresh();
}
