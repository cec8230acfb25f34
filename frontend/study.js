// The study page: the design, and for each run its status, live count histogram,
// unrecognized share, loss curve and sample grid, updated from the study's event stream.

import {
  ENDED_STATUSES,
  clearError,
  formatTimestamp,
  getJson,
  postJson,
  showError,
} from "/static/api.js";
import { formatShare, renderFigure, unrecognizedShare, updateStatusBadge } from "/static/charts.js";

const byId = (id) => document.getElementById(id);

// Run cards by run id.
const cards = new Map();
let design = null;
let source = null;
// Events that arrive before the first REST load has finished wait here.
let pendingEvents = [];
let loaded = false;

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

function describeDesign(study) {
  const { dataset, model, training } = study.design;
  const weights = dataset.weights ? dataset.weights.join(", ") : "equal";
  const trainingImages = dataset.training_images ?? "fresh images at every step";
  return [
    ["Dataset", [
      ["Dot counts", dataset.counts.join(", ")],
      ["Count weights", weights],
      ["Image size", `${dataset.image_size} × ${dataset.image_size}`],
      ["Pixel noise", dataset.noise],
      ["Dot radius", `${dataset.dot_radius} of the width`],
      ["Training set", trainingImages],
    ]],
    ["Model", [
      ["Kind", `${model.architecture} ${model.kind.toUpperCase()}`],
      ["Latent size", model.z_dim],
      ["KL weight (beta)", model.beta],
    ]],
    ["Training", [
      ["Steps", training.steps],
      ["Batch size", training.batch_size],
      ["Learning rate", training.learning_rate],
      ["Snapshot every", `${training.snapshot_every} steps`],
      ["Samples per snapshot", training.samples_per_snapshot],
      ["Seed", training.seed],
    ]],
  ];
}

function renderStudyHeader(study) {
  document.title = `biaslab — ${study.name}`;
  byId("study-name").textContent = study.name;
  byId("study-meta").textContent = `Study ${study.id}, created ${formatTimestamp(study.created_at)}`;
  byId("variant-link").href = `/?from=${study.id}`;

  const groups = describeDesign(study).map(([title, rows]) => {
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
    countsChart: section.querySelector(".counts-chart"),
    lossChart: section.querySelector(".loss-chart"),
    share: find("unrecognized-share"),
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
  card.countsChart.id = `counts-chart-${run.id}`;
  card.countsChart.setAttribute("aria-label", "Share of training and generated images at each dot count");
  card.lossChart.id = `loss-chart-${run.id}`;
  card.lossChart.setAttribute("aria-label", "Training loss against step");
  card.grid.id = `sample-grid-${run.id}`;
  card.share.id = `unrecognized-share-${run.id}`;
  card.slider.id = `snapshot-slider-${run.id}`;

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
    return `Waiting for a worker to start this run.${first}`;
  }
  if (run.status === "running") {
    return `Training.${first}`;
  }
  return `This run ended as ${run.status} before its first snapshot.`;
}

function updateRun(card, run) {
  card.run = run;
  const ended = ENDED_STATUSES.has(run.status);
  const percent = Math.round(Math.min(Math.max(run.progress || 0, 0), 1) * 1000) / 10;

  card.section.dataset.status = run.status;
  updateStatusBadge(card.badge, run.status);
  card.progress.value = percent;
  card.progress.setAttribute("aria-valuenow", String(percent));
  card.stepText.textContent = `step ${run.step} of ${run.steps} (${percent}%)`;

  const meta = [`device: ${run.device || "not assigned yet"}`];
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

  card.cancelButton.hidden = ended;
  card.cancelButton.disabled = run.cancel_requested;
  card.cancelButton.textContent = run.cancel_requested ? "Cancelling…" : "Cancel run";

  card.placeholder.hidden = card.shownStep !== null;
  card.placeholder.textContent = placeholderText(card);
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

// Draw one snapshot: both charts, the unrecognized share, the sample grid and the step label.
function showSnapshot(card, snapshot, figures) {
  card.shownStep = snapshot.step;
  card.placeholder.hidden = true;
  card.snapshotStep.textContent = String(snapshot.step);
  card.countsChart.dataset.step = String(snapshot.step);

  const share = unrecognizedShare(snapshot.histograms?.count);
  card.share.textContent = formatShare(share);
  card.share.dataset.value = share === null ? "" : String(share);

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

  renderFigure(card.countsChart, figures.counts, `counts-${card.id}`);
  renderFigure(card.lossChart, figures.loss, `loss-${card.id}`);
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

// ---- Start-up ----

async function start() {
  const studyId = parseStudyId();
  if (studyId === null) {
    showError(byId("study-error"), new Error(`This address is not a study page: ${window.location.pathname}`));
    return;
  }

  let study;
  try {
    study = await getJson(`/api/studies/${studyId}`);
  } catch (error) {
    showError(byId("study-error"), error);
    return;
  }
  design = study.design;
  renderStudyHeader(study);
  for (const run of study.runs) {
    createCard(run);
  }

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
