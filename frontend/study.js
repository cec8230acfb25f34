// The study page: the design, and for each run its status, one live histogram per feature
// of its dataset family, unrecognized shares, scores, loss curve and sample grid, updated
// from the study's event stream.

import {
  ENDED_STATUSES,
  clearError,
  formatTimestamp,
  getJson,
  postJson,
  showError,
} from "/static/api.js";
import { canChangeStudy, currentAccount } from "/static/account.js";
import { formatShare, renderFigure, unrecognizedShare, updateStatusBadge } from "/static/charts.js";
import { startCompare } from "/static/compare.js";
import { SchemaForm, fieldTitle } from "/static/schema_form.js";

const byId = (id) => document.getElementById(id);

// Run cards by run id.
const cards = new Map();
let design = null;
let source = null;
// Events that arrive before the first REST load has finished wait here.
let pendingEvents = [];
let loaded = false;
// False when the signed-in user is neither the study's owner nor an admin: cancel is hidden.
let canChange = true;

function parseStudyId() {
  const match = window.location.pathname.match(/^\/studies\/(\d+)\/?$/);
  return match ? Number(match[1]) : null;
}

function setLiveStatus(text, state) {
  const element = byId("live-status");
  element.textContent = text;
  element.dataset.state = state;
}

// ---- Design summary ----

// Meanings of unset (null) fields, where a field's null means more than "not set".
const NULL_MEANINGS = {
  weights: "equal",
  training_images: "fresh images at every step",
};

function formatValue(name, value) {
  if (value === null || value === undefined) {
    return NULL_MEANINGS[name] ?? "not set";
  }
  if (name === "image_size") {
    return `${value} × ${value}`;
  }
  if (Array.isArray(value)) {
    return value.map((item) => (typeof item === "object" ? JSON.stringify(item) : String(item))).join(", ");
  }
  if (typeof value === "object") {
    return JSON.stringify(value);
  }
  return String(value);
}

// Rows of [label, value] for every field of one design section, in the stored order. The
// labels are the designer's, taken from the design schema. Where that schema could not be
// loaded (`schema` is null) or no longer has a field, the label is made from the field name.
function describeSection(schema, sectionName, section, skipped = []) {
  const titles = schema ? new SchemaForm(schema).fieldTitles(schema.properties[sectionName], section) : {};
  return Object.entries(section ?? {})
    .filter(([name]) => !skipped.includes(name))
    .map(([name, value]) => [titles[name] ?? fieldTitle(name), formatValue(name, value)]);
}

function describeDesign(study, schema) {
  const { dataset, model, training, sweep } = study.design;
  const groups = [
    [`Dataset: ${dataset.family}`, describeSection(schema, "dataset", dataset, ["family"])],
    [`Model: ${model.kind}`, describeSection(schema, "model", model, ["kind"])],
    ["Training", describeSection(schema, "training", training)],
  ];
  if (sweep?.length) {
    // Each axis with its value labels; a run takes one value of every axis.
    const axes = sweep.map((axis) => [
      axis.name ?? axis.path,
      (axis.labels ?? axis.values.map((value) => formatValue("", value))).join("; "),
    ]);
    groups.push([`Sweep: ${study.runs.length} runs`, axes]);
  }
  return groups;
}

function renderStudyHeader(study, schema) {
  document.title = `biaslab — ${study.name}`;
  byId("study-name").textContent = study.name;
  const owner = study.owner ? `, owned by ${study.owner}${study.private ? " (private)" : ""}` : "";
  const readOnly = canChange ? "" : ". Only its owner or an admin can cancel its runs.";
  const origin = study.imported_from
    ? `. Imported from a bundle of study ${study.imported_from.study_id}, exported ${formatTimestamp(study.imported_from.exported_at)}`
    : "";
  byId("study-meta").textContent =
    `Study ${study.id}, created ${formatTimestamp(study.created_at)}${owner}${origin}${readOnly}`;
  byId("variant-link").href = `/?from=${study.id}`;

  const groups = describeDesign(study, schema).map(([title, rows]) => {
    const group = document.createElement("div");
    group.className = "design-group";
    const heading = document.createElement("h2");
    heading.textContent = title;
    const list = document.createElement("dl");
    for (const [label, value] of rows) {
      const term = document.createElement("dt");
      term.textContent = label;
      const detail = document.createElement("dd");
      detail.textContent = String(value);
      list.append(term, detail);
    }
    group.append(heading, list);
    return group;
  });
  byId("design-summary").replaceChildren(...groups);
  byId("study-header").hidden = false;
}

// ---- Run cards ----

function createCard(run) {
  const fragment = byId("run-template").content.cloneNode(true);
  const section = fragment.querySelector("section");
  const find = (testid) => section.querySelector(`[data-testid="${testid}"]`);
  const card = {
    id: run.id,
    run,
    snapshots: [],
    shownStep: null,
    following: true,
    // Counts each snapshot request, so that only the latest one is drawn.
    selection: 0,
    section,
    badge: find("run-status"),
    progress: find("run-progress"),
    stepText: find("run-step"),
    meta: find("run-meta"),
    error: find("run-error"),
    cancelError: find("cancel-error"),
    chartError: find("chart-error"),
    cancelButton: find("cancel-run"),
    snapshotStep: find("snapshot-step"),
    placeholder: find("chart-placeholder"),
    // Per feature name: its chart element and its unrecognized-share value, made on first use.
    features: new Map(),
    featureCharts: section.querySelector(".feature-charts"),
    shares: find("unrecognized-shares"),
    scores: find("scores"),
    scoresList: section.querySelector(".scores-list"),
    lossChart: section.querySelector(".loss-chart"),
    lossBlock: section.querySelector(".loss-block"),
    // The probe's shares and the sample grid: hidden until the first snapshot is shown.
    snapshotParts: [section.querySelector(".unrecognized-box"), section.querySelector(".sample-grid-figure")],
    grid: find("sample-grid"),
    picker: section.querySelector(".snapshot-picker"),
    slider: find("snapshot-slider"),
    followNote: find("snapshot-follow"),
  };

  section.id = `run-${run.id}`;
  section.dataset.runId = String(run.id);
  const title = section.querySelector(".run-title");
  title.id = `run-title-${run.id}`;
  title.textContent = `Run ${run.index + 1}`;
  section.setAttribute("aria-labelledby", title.id);
  card.progress.id = `progress-${run.id}`;
  card.stepText.id = `run-step-${run.id}`;
  card.progress.setAttribute("aria-labelledby", `${title.id} ${card.stepText.id}`);
  card.lossChart.id = `loss-chart-${run.id}`;
  card.lossChart.setAttribute("aria-label", "Training loss against step");
  card.grid.id = `sample-grid-${run.id}`;
  card.slider.id = `snapshot-slider-${run.id}`;

  for (const part of card.snapshotParts) {
    part.hidden = true;
  }
  card.lossBlock.hidden = true;
  card.cancelButton.addEventListener("click", () => cancelRun(card));
  card.slider.addEventListener("input", () => selectSnapshot(card, Number(card.slider.value)));

  byId("runs").append(fragment);
  cards.set(run.id, card);
  updateRun(card, run);
  return card;
}

function placeholderText(card) {
  const { run } = card;
  const every = design?.training?.snapshot_every;
  const first = every ? ` The first snapshot comes at step ${every}.` : "";
  if (run.status === "queued") {
    // waiting_reason says why no worker takes it yet, such as its owner's limit of runs.
    const why = run.waiting_reason ? ` (${run.waiting_reason})` : "";
    return `Waiting for a worker to start this run${why}.${first}`;
  }
  if (run.status === "running") {
    return `Training.${first}`;
  }
  return `This run ended as ${run.status} before its first snapshot.`;
}

function updateRun(card, run) {
  // At creation card.run is this run already, so only a later event can end it in view.
  const wasEnded = ENDED_STATUSES.has(card.run.status);
  card.run = run;
  const ended = ENDED_STATUSES.has(run.status);
  const percent = Math.round(Math.min(Math.max(run.progress || 0, 0), 1) * 1000) / 10;

  card.section.dataset.status = run.status;
  updateStatusBadge(card.badge, run.status);
  card.progress.value = percent;
  card.progress.setAttribute("aria-valuenow", String(percent));
  card.stepText.textContent = `step ${run.step} of ${run.steps} (${percent}%)`;

  // A run cancelled or failed while queued never got a device.
  const noDevice = ended ? "none" : "not assigned yet";
  const meta = [`device: ${run.device || noDevice}`];
  if (run.status === "queued" && run.waiting_reason) {
    meta.unshift(run.waiting_reason);
  }
  if (run.worker_host) {
    meta.push(`worker: ${run.worker_host}`);
  }
  if (run.started_at) {
    meta.push(`started ${formatTimestamp(run.started_at)}`);
  }
  if (run.finished_at) {
    meta.push(`finished ${formatTimestamp(run.finished_at)}`);
  }
  card.meta.textContent = meta.join(" · ");

  if (run.error) {
    card.error.textContent = `${run.status === "failed" ? "Run failed" : "Error"}: ${run.error}`;
    card.error.hidden = false;
  } else {
    clearError(card.error);
  }

  card.cancelButton.hidden = ended || !canChange;
  card.cancelButton.disabled = run.cancel_requested;
  card.cancelButton.textContent = run.cancel_requested ? "Cancelling…" : "Cancel run";

  card.placeholder.hidden = card.shownStep !== null;
  card.placeholder.textContent = placeholderText(card);
  // A run that ends in view before its first snapshot gets its loss curve here. For runs
  // that had ended when the page opened, loadSnapshots draws it.
  if (ended && !wasEnded && card.snapshots.length === 0) {
    showLossAlone(card);
  }
}

// Draw the loss curve of a run that ended before its first snapshot. A run cancelled while
// queued has no loss, and its loss block stays hidden.
async function showLossAlone(card) {
  let figures;
  try {
    figures = await getJson(`/api/runs/${card.id}/figures`);
  } catch (error) {
    showError(card.chartError, error);
    return;
  }
  if (card.shownStep === null) {
    showLoss(card, figures.loss);
  }
}

function showLoss(card, figure) {
  const points = figure.data.reduce((total, trace) => total + (trace.x?.length || 0), 0);
  card.lossBlock.hidden = points === 0;
  if (points > 0) {
    renderFigure(card.lossChart, figure, `loss-${card.id}`);
  }
}

async function cancelRun(card) {
  card.cancelButton.disabled = true;
  clearError(card.cancelError);
  try {
    updateRun(card, await postJson(`/api/runs/${card.id}/cancel`));
  } catch (error) {
    showError(card.cancelError, error);
    card.cancelButton.disabled = false;
  }
}

// ---- Snapshots and charts ----

// Return the chart and share elements of one feature, adding them in the order first seen.
function featureView(card, name, title) {
  let view = card.features.get(name);
  if (view) {
    return view;
  }
  const block = byId("feature-chart-template").content.firstElementChild.cloneNode(true);
  block.dataset.feature = name;
  const chart = block.querySelector(".feature-chart");
  chart.id = `feature-chart-${card.id}-${name}`;
  chart.setAttribute("aria-label", `Share of training and generated images by ${title.toLowerCase()}`);
  card.featureCharts.append(block);

  const row = byId("unrecognized-template").content.firstElementChild.cloneNode(true);
  const share = row.querySelector(".unrecognized-value");
  share.id = `unrecognized-share-${card.id}-${name}`;
  share.dataset.feature = name;
  row.querySelector(".unrecognized-feature").textContent = title;
  card.shares.append(row);

  view = { chart, share };
  card.features.set(name, view);
  return view;
}

// Show the family's scores (precision, recall, ...) of a snapshot, or hide the box without any.
function showScores(card, scores) {
  const entries = Object.entries(scores ?? {});
  card.scores.hidden = entries.length === 0;
  const rows = entries.flatMap(([name, value]) => {
    const term = document.createElement("dt");
    term.textContent = fieldTitle(name);
    const detail = document.createElement("dd");
    detail.dataset.score = name;
    detail.textContent = typeof value === "number" ? value.toFixed(3) : "no value";
    return [term, detail];
  });
  card.scoresList.replaceChildren(...rows);
}

// Draw one snapshot: a chart per feature, the loss chart, the unrecognized shares, the
// scores, the sample grid and the step label.
function showSnapshot(card, snapshot, figures) {
  card.shownStep = snapshot.step;
  card.placeholder.hidden = true;
  for (const part of card.snapshotParts) {
    part.hidden = false;
  }
  card.snapshotStep.textContent = String(snapshot.step);

  for (const feature of figures.features) {
    const view = featureView(card, feature.name, feature.title);
    view.chart.dataset.step = String(snapshot.step);
    const share = unrecognizedShare(snapshot.histograms?.[feature.name]);
    view.share.textContent = formatShare(share);
    view.share.dataset.value = share === null ? "" : String(share);
    renderFigure(view.chart, feature.figure, `feature-${card.id}-${feature.name}`);
  }
  showScores(card, snapshot.scores);

  if (snapshot.grid_url) {
    card.grid.src = snapshot.grid_url;
    card.grid.alt = `An 8 by 8 grid of samples generated at step ${snapshot.step}`;
    card.grid.hidden = false;
  } else {
    card.grid.hidden = true;
  }

  const index = card.snapshots.findIndex((item) => item.step === snapshot.step);
  card.slider.value = String(index);
  updateFollowNote(card);

  showLoss(card, figures.loss);
}

function updateFollowNote(card) {
  const latest = card.snapshots.at(-1);
  if (card.following || !latest) {
    card.followNote.textContent = card.snapshots.length > 1 ? "following the latest snapshot" : "";
  } else {
    card.followNote.textContent = `latest is step ${latest.step}; move the slider to the right end to follow it`;
  }
}

// Fetch the figures of one snapshot and draw it, unless the user has picked another since.
async function showStoredSnapshot(card, snapshot) {
  card.selection += 1;
  const selection = card.selection;
  try {
    const figures = await getJson(`/api/runs/${card.id}/figures?step=${snapshot.step}`);
    if (selection === card.selection) {
      clearError(card.chartError);
      showSnapshot(card, snapshot, figures);
    }
  } catch (error) {
    showError(card.chartError, error);
  }
}

// Add a snapshot to the card's ordered list and keep the slider on the shown one.
function insertSnapshot(card, snapshot) {
  if (!card.snapshots.some((item) => item.step === snapshot.step)) {
    card.snapshots.push(snapshot);
    card.snapshots.sort((a, b) => a.step - b.step);
  }
  card.slider.max = String(card.snapshots.length - 1);
  card.picker.hidden = card.snapshots.length < 2;
  if (card.shownStep !== null) {
    card.slider.value = String(card.snapshots.findIndex((item) => item.step === card.shownStep));
  }
}

// Record a snapshot from the event stream; draw it when the card follows the
// latest snapshot and it is newer than the one shown.
function addSnapshot(card, snapshot, figures) {
  insertSnapshot(card, snapshot);
  const isNewer = card.shownStep === null || snapshot.step > card.shownStep;
  if (card.following && isNewer) {
    // Drawing now also discards a slower request for an older snapshot.
    card.selection += 1;
    showSnapshot(card, snapshot, figures);
  } else {
    updateFollowNote(card);
  }
}

function selectSnapshot(card, index) {
  const snapshot = card.snapshots[index];
  if (!snapshot) {
    return;
  }
  card.following = index === card.snapshots.length - 1;
  showStoredSnapshot(card, snapshot);
}

// Load the stored snapshots of a run and draw the latest one, fetching figures for it alone.
async function loadSnapshots(card) {
  let snapshots;
  try {
    ({ snapshots } = await getJson(`/api/runs/${card.id}/snapshots`));
  } catch (error) {
    showError(card.chartError, error);
    return;
  }
  for (const snapshot of snapshots) {
    insertSnapshot(card, snapshot);
  }
  const latest = card.snapshots.at(-1);
  if (latest && card.following && (card.shownStep === null || latest.step > card.shownStep)) {
    await showStoredSnapshot(card, latest);
  } else if (!latest && ENDED_STATUSES.has(card.run.status)) {
    await showLossAlone(card);
  }
}

// Follow the study's step slider (compare.js): each card shows its newest snapshot at or
// before the chosen step, or follows its latest snapshot while the slider is at its end.
function followStudyStep(event) {
  const { step, following } = event.detail;
  for (const card of cards.values()) {
    let index = card.snapshots.length - 1;
    if (!following) {
      index = card.snapshots.findLastIndex((snapshot) => snapshot.step <= step);
    }
    const snapshot = card.snapshots[index];
    card.following = following;
    if (snapshot && snapshot.step !== card.shownStep) {
      showStoredSnapshot(card, snapshot);
    } else {
      updateFollowNote(card);
    }
  }
}

// ---- Live events ----

function allRunsEnded() {
  return [...cards.values()].every((card) => ENDED_STATUSES.has(card.run.status));
}

// Once every run has ended, read the stored snapshots again (the stream may close
// before the last snapshot event arrives) and stop listening.
async function finishLiveUpdates() {
  if (source) {
    source.close();
    source = null;
  }
  await Promise.all([...cards.values()].map(loadSnapshots));
  setLiveStatus("All runs have ended.", "ended");
}

function handleEvent(name, data) {
  if (name === "run") {
    const card = cards.get(data.id);
    if (card) {
      updateRun(card, data);
    }
  } else if (name === "snapshot") {
    const card = cards.get(data.run_id);
    if (card) {
      addSnapshot(card, data.snapshot, data.figures);
    }
    document.dispatchEvent(new CustomEvent("biaslab:snapshot", { detail: { runId: data.run_id } }));
  }
  if (name === "run" && source && allRunsEnded()) {
    finishLiveUpdates();
  }
}

function receive(name, message) {
  let data;
  try {
    data = JSON.parse(message.data);
  } catch (error) {
    setLiveStatus(`Ignored a ${name} event whose data is not JSON: ${error.message}`, "error");
    return;
  }
  if (loaded) {
    handleEvent(name, data);
  } else {
    pendingEvents.push([name, data]);
  }
}

// The stream starts after the last event the study page was loaded with; EventSource
// reconnects by itself and sends Last-Event-ID, so the server resumes where it stopped.
function connect(studyId, afterEventId) {
  source = new EventSource(`/api/studies/${studyId}/events?after=${afterEventId}`);
  source.addEventListener("run", (message) => receive("run", message));
  source.addEventListener("snapshot", (message) => receive("snapshot", message));
  source.addEventListener("open", () => setLiveStatus("Live: the charts update as the runs train.", "open"));
  source.addEventListener("error", () => {
    if (source && source.readyState === EventSource.CLOSED) {
      setLiveStatus("The live connection failed. Reload the page to try again.", "closed");
    } else if (source) {
      setLiveStatus("The live connection dropped; reconnecting…", "reconnecting");
    }
  });
}

// ---- Training cells ----

// A combinations run lists its training cells (size/x/y/red, in the order of the `cell`
// bins), so precision and recall can be checked against them.
async function showTrainingCells(card) {
  if (design?.dataset?.family !== "combinations") {
    return;
  }
  let cells;
  try {
    ({ training_cells: cells } = await getJson(`/api/runs/${card.id}/features`));
  } catch (error) {
    showError(card.chartError, error);
    return;
  }
  if (!cells?.length) {
    return;
  }
  const details = document.createElement("details");
  details.className = "training-cells";
  details.dataset.testid = "training-cells";
  const summary = document.createElement("summary");
  summary.textContent = `Training cells: ${cells.length} (size/x/y/red)`;
  const list = document.createElement("ol");
  list.className = "cell-list";
  for (const cell of cells) {
    const item = document.createElement("li");
    item.textContent = `${cell.size}/${cell.x}/${cell.y}/${cell.red}`;
    list.append(item);
  }
  details.append(summary, list);
  card.scores.after(details);
}

// ---- Start-up ----

async function start() {
  const studyId = parseStudyId();
  if (studyId === null) {
    showError(byId("study-error"), new Error(`This address is not a study page: ${window.location.pathname}`));
    return;
  }

  // The design schema gives the field labels; without it the summary still shows every field.
  const schemaRequest = getJson("/api/design/schema").catch(() => null);
  let study;
  try {
    study = await getJson(`/api/studies/${studyId}`);
  } catch (error) {
    showError(byId("study-error"), error);
    return;
  }
  design = study.design;
  canChange = canChangeStudy(await currentAccount(), study);
  renderStudyHeader(study, await schemaRequest);
  for (const run of study.runs) {
    showTrainingCells(createCard(run));
  }
  document.addEventListener("biaslab:step", followStudyStep);
  startCompare(study);

  // Open the stream before loading snapshots, so that nothing committed meanwhile is missed.
  const live = !allRunsEnded();
  if (live) {
    setLiveStatus("Connecting to the live updates…", "connecting");
    connect(studyId, study.last_event_id ?? 0);
  }
  await Promise.all([...cards.values()].map(loadSnapshots));

  loaded = true;
  const queued = pendingEvents;
  pendingEvents = [];
  for (const [name, data] of queued) {
    handleEvent(name, data);
  }
  if (!live) {
    setLiveStatus("All runs have ended.", "ended");
  }
}

start();
