// The study designer page: the design form, the live dataset preview and the list of studies.

import {
  ApiError,
  ENDED_STATUSES,
  clearError,
  formatTimestamp,
  getJson,
  postForBlob,
  postJson,
  showError,
} from "/static/api.js";
import { statusBadge } from "/static/charts.js";

const PREVIEW_DELAY_MS = 300;
const STUDIES_REFRESH_MS = 5000;

// Two dot counts close together: the generated histogram is expected to peak at 3,
// a count that no training image has ("prototype enhancement").
const DEFAULT_DESIGN = {
  name: "two and four dots",
  dataset: {
    family: "dots",
    image_size: 32,
    counts: [2, 4],
    weights: null,
    noise: 0.03,
    dot_radius: 0.08,
    training_images: null,
  },
  model: { kind: "vae", architecture: "conv", z_dim: 32, beta: 1.0 },
  training: {
    steps: 3000,
    batch_size: 64,
    learning_rate: 0.001,
    snapshot_every: 250,
    samples_per_snapshot: 1000,
    seed: 0,
  },
};

const form = document.getElementById("design-form");
const input = (id) => document.getElementById(id);

// ---- Reading and filling the form ----

// Split "2, 4" into [2, 4]. A token that is not a number is sent as typed, so
// the server's message names it instead of the page dropping it silently.
function parseList(text) {
  return text
    .split(/[\s,;]+/)
    .filter((token) => token !== "")
    .map((token) => (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(token) ? Number(token) : token));
}

// An empty number input is sent as null, and the server names the field if it is required.
function numberValue(id) {
  const value = input(id).value.trim();
  return value === "" ? null : Number(value);
}

function readDataset() {
  const weights = input("weights").value.trim();
  return {
    family: "dots",
    image_size: Number(input("image-size").value),
    counts: parseList(input("counts").value),
    weights: weights === "" ? null : parseList(weights),
    noise: numberValue("noise"),
    dot_radius: numberValue("dot-radius"),
    training_images: numberValue("training-images"),
  };
}

function readDesign() {
  return {
    name: input("study-name").value,
    dataset: readDataset(),
    model: { kind: "vae", architecture: "conv", z_dim: numberValue("z-dim"), beta: numberValue("beta") },
    training: {
      steps: numberValue("steps"),
      batch_size: numberValue("batch-size"),
      learning_rate: numberValue("learning-rate"),
      snapshot_every: numberValue("snapshot-every"),
      samples_per_snapshot: numberValue("samples-per-snapshot"),
      seed: numberValue("seed"),
    },
  };
}

function fillForm(name, design) {
  const { dataset, model, training } = design;
  input("study-name").value = name;
  input("counts").value = dataset.counts.join(", ");
  input("weights").value = dataset.weights ? dataset.weights.join(", ") : "";
  input("image-size").value = String(dataset.image_size);
  input("noise").value = dataset.noise;
  input("dot-radius").value = dataset.dot_radius;
  input("training-images").value = dataset.training_images ?? "";
  input("z-dim").value = model.z_dim;
  input("beta").value = model.beta;
  input("steps").value = training.steps;
  input("batch-size").value = training.batch_size;
  input("learning-rate").value = training.learning_rate;
  input("snapshot-every").value = training.snapshot_every;
  input("samples-per-snapshot").value = training.samples_per_snapshot;
  input("seed").value = training.seed;
  syncSnapshotLimit();
}

// The server rejects snapshot_every above steps, so the input's max follows steps and the
// browser marks a too-large value before submitting.
function syncSnapshotLimit() {
  const steps = Number(input("steps").value);
  input("snapshot-every").max = Number.isInteger(steps) && steps >= 1 ? String(steps) : "1000000";
}

// ---- Validation errors next to their fields ----

function clearFieldErrors() {
  for (const element of form.querySelectorAll(".field-error")) {
    clearError(element);
  }
  for (const element of form.querySelectorAll("[aria-invalid]")) {
    element.removeAttribute("aria-invalid");
  }
  clearError(input("form-errors"));
}

// Find the form element for a server field such as "dataset.counts[0]": the
// field itself, else its nearest enclosing group ("dataset"), else none.
function containerForField(field) {
  if (!field) {
    return null;
  }
  const parts = field.replace(/\[\d+\]/g, "").split(".");
  while (parts.length) {
    const container = form.querySelector(`[data-field="${CSS.escape(parts.join("."))}"]`);
    if (container) {
      return container;
    }
    parts.pop();
  }
  return null;
}

function addFieldMessage(container, message) {
  const slot = container.querySelector(".field-error");
  const line = document.createElement("span");
  line.className = "error-line";
  line.textContent = message;
  slot.append(line);
  slot.hidden = false;
  const control = container.matches(".field") ? container.querySelector("input, select") : null;
  if (control) {
    control.setAttribute("aria-invalid", "true");
  }
}

// Show every message in the summary under the button, and each one also next to its field.
function showValidationErrors(error) {
  showError(input("form-errors"), error);
  let firstInvalid = null;
  for (const item of error.items || []) {
    const container = containerForField(item.field);
    if (container) {
      addFieldMessage(container, item.message);
      firstInvalid ??= container.querySelector("input, select");
    }
  }
  if (firstInvalid) {
    firstInvalid.focus();
  }
}

// ---- Live dataset preview ----

const preview = {
  image: input("dataset-preview"),
  frame: input("preview-frame"),
  error: input("preview-error"),
  timer: null,
  controller: null,
  objectUrl: null,
};

function schedulePreview() {
  clearTimeout(preview.timer);
  preview.timer = setTimeout(refreshPreview, PREVIEW_DELAY_MS);
}

async function refreshPreview() {
  // Only the latest design matters: abort a preview still in flight.
  preview.controller?.abort();
  const controller = new AbortController();
  preview.controller = controller;
  preview.frame.setAttribute("aria-busy", "true");
  preview.frame.dataset.state = "loading";

  try {
    const blob = await postForBlob("/api/datasets/preview", readDataset(), { signal: controller.signal });
    // Decode off-screen first, so a newer request that finished earlier is never overwritten.
    const url = URL.createObjectURL(blob);
    const loader = new Image();
    loader.src = url;
    try {
      await loader.decode();
    } catch (error) {
      URL.revokeObjectURL(url);
      throw new Error("The server returned a preview image that could not be decoded.");
    }
    if (preview.controller !== controller) {
      URL.revokeObjectURL(url);
      return;
    }
    const previousUrl = preview.objectUrl;
    preview.objectUrl = url;
    preview.image.src = url;
    if (previousUrl) {
      URL.revokeObjectURL(previousUrl);
    }
    preview.image.hidden = false;
    clearError(preview.error);
    preview.frame.dataset.state = "ready";
  } catch (error) {
    if (error.name === "AbortError" || preview.controller !== controller) {
      return;
    }
    preview.image.hidden = true;
    showError(preview.error, error);
    preview.frame.dataset.state = "invalid";
  } finally {
    if (preview.controller === controller) {
      preview.frame.setAttribute("aria-busy", "false");
    }
  }
}

// ---- Submitting ----

async function submitDesign(event) {
  event.preventDefault();
  clearFieldErrors();
  const button = input("submit-study");
  const state = input("submit-state");
  button.disabled = true;
  state.textContent = "Creating the study…";

  try {
    const study = await postJson("/api/studies", readDesign());
    state.textContent = `Study ${study.id} created, opening it…`;
    window.location.assign(`/studies/${study.id}`);
  } catch (error) {
    state.textContent = "";
    if (error instanceof ApiError && error.status === 422) {
      showValidationErrors(error);
    } else {
      showError(input("form-errors"), error);
    }
    button.disabled = false;
  }
}

// ---- Existing studies ----

function runSummary(run) {
  const item = document.createElement("li");
  item.className = "run-summary";
  const percent = Math.round((run.progress || 0) * 100);
  const detail = document.createElement("span");
  detail.className = "muted";
  detail.textContent = ` run ${run.index + 1}: step ${run.step} of ${run.steps} (${percent}%)`;
  item.append(statusBadge(run.status), detail);
  return item;
}

function studyItem(study) {
  const item = document.createElement("li");
  item.className = "study-item";
  item.dataset.studyId = String(study.id);

  const title = document.createElement("div");
  title.className = "study-title";
  const link = document.createElement("a");
  link.href = `/studies/${study.id}`;
  link.textContent = study.name;
  const meta = document.createElement("span");
  meta.className = "muted";
  const counts = study.design?.dataset?.counts;
  const countsText = Array.isArray(counts) ? ` · counts ${counts.join(", ")}` : "";
  meta.textContent = ` #${study.id} · ${formatTimestamp(study.created_at)}${countsText}`;
  title.append(link, meta);

  const runs = document.createElement("ul");
  runs.className = "run-summaries";
  runs.append(...study.runs.map(runSummary));
  item.append(title, runs);
  return item;
}

async function loadStudies() {
  const errorBox = input("studies-error");
  let hasActiveRun = false;
  try {
    const { studies, count } = await getJson("/api/studies");
    input("study-list").replaceChildren(...studies.map(studyItem));
    input("studies-empty").hidden = studies.length > 0;
    // The API returns the newest 100 studies unless asked for another page.
    const more = input("studies-more");
    more.textContent = `Showing the newest ${studies.length} of ${count} studies.`;
    more.hidden = count <= studies.length;
    clearError(errorBox);
    hasActiveRun = studies.some((study) => study.runs.some((run) => !ENDED_STATUSES.has(run.status)));
  } catch (error) {
    showError(errorBox, error);
  }
  if (hasActiveRun) {
    setTimeout(loadStudies, STUDIES_REFRESH_MS);
  }
}

// ---- Start-up ----

// "/?from=7" starts from the design of study 7, so a variant is one edit away.
async function initialDesign() {
  const from = new URLSearchParams(window.location.search).get("from");
  if (from && /^\d+$/.test(from)) {
    try {
      const study = await getJson(`/api/studies/${from}`);
      return { name: `${study.name} (variant)`, design: study.design };
    } catch (error) {
      showError(input("form-errors"), error);
    }
  }
  return { name: DEFAULT_DESIGN.name, design: DEFAULT_DESIGN };
}

async function start() {
  const { name, design } = await initialDesign();
  fillForm(name, design);
  form.addEventListener("submit", submitDesign);
  form.querySelector('fieldset[data-field="dataset"]').addEventListener("input", schedulePreview);
  input("steps").addEventListener("input", syncSnapshotLimit);
  refreshPreview();
  loadStudies();
}

start();
