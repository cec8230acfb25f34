// The study designer page: a form built from the design's JSON schema, the live dataset
// preview and histograms, parameter counts, presets, and the list of studies.

import { ApiError, ENDED_STATUSES, clearError, formatTimestamp, getJson, postJson, showError } from "/static/api.js";
import { statusBadge } from "/static/charts.js";
import { DatasetPreview } from "/static/design_preview.js";
import { FieldErrors, fieldSummary } from "/static/field_errors.js";
import { ParameterCounts, PresetPicker } from "/static/model_choices.js";
import { SchemaForm } from "/static/schema_form.js";
import { watchRunCount } from "/static/run_count.js";

const STUDIES_REFRESH_MS = 5000;
// The name a new study starts with, by dataset family. Changing the family replaces it
// while the user has not edited it.
const DEFAULT_NAMES = {
  dots: "two and four dots",
  pie: "one pie",
  combinations: "ten pie combinations",
  shapes: "two shapes",
};

// The dots design a new study starts from. Two dot counts close together: the generated
// histogram is expected to peak at 3, a count that no training image has ("prototype
// enhancement"). Other families and every other field start from the schema's defaults.
const START_VALUES = {
  dataset: { dots: { family: "dots", image_size: 32, counts: [2, 4], noise: 0.03 } },
};

const form = document.getElementById("design-form");
const byId = (id) => document.getElementById(id);
const errors = new FieldErrors(form);

// The design's parts by top-level field ("name", "dataset", "model", "training").
let sections = {};

function readDesign() {
  return Object.fromEntries(Object.entries(sections).map(([name, widget]) => [name, widget.read()]));
}

function writeDesign(name, design) {
  for (const [field, widget] of Object.entries(sections)) {
    if (field === "name") {
      widget.write(name);
    } else if (design[field] !== undefined) {
      widget.write(design[field]);
    }
  }
  syncSnapshotLimit();
}

// ---- Building the form ----

// The form follows the schema's order, except that the name comes first.
function buildForm(schema) {
  const builder = new SchemaForm(schema, { startValue: (path, tag) => START_VALUES[path]?.[tag] });
  const names = Object.keys(schema.properties);
  const ordered = [...names.filter((name) => name === "name"), ...names.filter((name) => name !== "name")];
  const container = byId("design-fields");
  container.replaceChildren();
  sections = {};
  for (const name of ordered) {
    const built = builder.field(name, name, schema.properties[name]);
    sections[name] = built.widget;
    if (built.element) {
      container.append(built.element);
    }
  }
  form.removeAttribute("aria-busy");
}

const groupOf = (name) => form.querySelector(`fieldset[data-field="${name}"]`);

// The server rejects snapshot_every above steps, so the input's max follows steps and the
// browser marks a too-large value before submitting.
function syncSnapshotLimit() {
  const steps = byId("training-steps");
  const snapshotEvery = byId("training-snapshot-every");
  if (steps && snapshotEvery) {
    const value = Number(steps.value);
    snapshotEvery.max = Number.isInteger(value) && value >= 1 ? String(value) : "1000000";
  }
}

// ---- Submitting ----

function clearSubmitErrors() {
  errors.clear("submit");
  clearError(byId("form-errors"));
}

async function submitDesign(event) {
  event.preventDefault();
  errors.clear("submit");
  clearError(byId("form-errors"));
  const button = byId("submit-study");
  const state = byId("submit-state");
  button.disabled = true;
  state.textContent = "Creating the study…";

  try {
    const study = await postJson("/api/studies", readDesign());
    state.textContent = `Study ${study.id} created, opening it…`;
    window.location.assign(`/studies/${study.id}`);
  } catch (error) {
    state.textContent = "";
    // Each message goes next to its field. The summary under the button names those fields
    // and repeats in full only the messages that no field shows.
    if (error instanceof ApiError && error.status === 422) {
      const unplaced = errors.show("submit", error.items);
      showError(byId("form-errors"), fieldSummary(error, error.items, unplaced));
      errors.firstInvalid()?.focus();
    } else {
      showError(byId("form-errors"), error);
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
  const dataset = study.design?.dataset || {};
  const counts = Array.isArray(dataset.counts) ? ` counts ${dataset.counts.join(", ")}` : "";
  const family = dataset.family ? ` · ${dataset.family}${counts}` : "";
  meta.textContent = ` #${study.id} · ${formatTimestamp(study.created_at)}${family}`;
  title.append(link, meta);

  const runs = document.createElement("ul");
  runs.className = "run-summaries";
  runs.append(...study.runs.map(runSummary));
  item.append(title, runs);
  return item;
}

async function loadStudies() {
  const errorBox = byId("studies-error");
  let hasActiveRun = false;
  try {
    const { studies, count } = await getJson("/api/studies");
    byId("study-list").replaceChildren(...studies.map(studyItem));
    byId("studies-empty").hidden = studies.length > 0;
    // The API returns the newest 100 studies unless asked for another page.
    const more = byId("studies-more");
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
      showError(byId("form-errors"), error);
    }
  }
  return { name: DEFAULT_NAMES.dots, design: {} };
}

function datasetImageSize() {
  return sections.dataset?.read()?.image_size ?? null;
}

function wireLiveViews() {
  const datasetBox = groupOf("dataset");
  const modelBox = groupOf("model");
  const trainingBox = groupOf("training");

  const preview = new DatasetPreview({
    readDataset: () => sections.dataset.read(),
    onValid: () => errors.clear("preview"),
    onInvalid: (items) => {
      errors.clear("preview");
      return errors.show("preview", items);
    },
  });
  const counts = new ParameterCounts({
    modelBox,
    readModel: () => sections.model.read(),
    readImageSize: datasetImageSize,
    onValid: () => errors.clear("parameters"),
    onInvalid: (items) => {
      errors.clear("parameters");
      return errors.show("parameters", items);
    },
  });
  const presets = new PresetPicker({
    modelBox,
    apply: ({ model, training }) => {
      sections.model.write(model);
      sections.training.write({ ...sections.training.read(), ...training });
      // A preset rewrites the model and training fields, so the errors that the last submit
      // found in them no longer apply.
      clearSubmitErrors();
      syncSnapshotLimit();
      counts.refresh();
    },
  });

  datasetBox.addEventListener("input", () => {
    preview.schedule();
    counts.schedule();
  });
  modelBox.addEventListener("variantchange", () => counts.attach());
  datasetBox.addEventListener("variantchange", (event) => {
    const defaults = Object.values(DEFAULT_NAMES);
    const name = DEFAULT_NAMES[event.detail.tag];
    if (name && defaults.includes(sections.name.read())) {
      sections.name.write(name);
    }
  });
  modelBox.addEventListener("input", (event) => {
    if (event.target !== presets.select) {
      presets.markEdited();
    }
    counts.schedule();
  });
  trainingBox.addEventListener("input", () => {
    presets.markEdited();
    syncSnapshotLimit();
  });
  counts.attach();
  preview.refresh();
  counts.refresh();
  presets.load();
}

// A run waits on the queue of the device it asks for (training.device), so the select
// disables a device that no live worker takes, unless the design loaded with it.
async function offerDevices() {
  const select = byId("training-device");
  if (!select) {
    return;
  }
  let devices;
  try {
    ({ devices } = await getJson("/api/workers"));
  } catch {
    return; // The server checks the design; the select keeps every choice.
  }
  for (const option of select.options) {
    const served = devices.includes(option.value);
    option.disabled = !served && !option.selected;
    option.textContent = served ? option.value : `${option.value} (no worker connected)`;
  }
}

async function start() {
  let schema;
  try {
    schema = await getJson("/api/design/schema");
  } catch (error) {
    byId("design-loading").textContent = "The design fields could not be loaded.";
    showError(byId("form-errors"), error);
    loadStudies();
    return;
  }
  buildForm(schema);
  const { name, design } = await initialDesign();
  writeDesign(name, design);
  offerDevices();
  wireLiveViews();
  watchRunCount(form, readDesign, byId("run-count"));
  form.addEventListener("submit", submitDesign);
  // A field the user edits drops the messages of the last submit about it; live checks stay.
  // The summary under the button is cleared with the last of them.
  form.addEventListener("input", (event) => {
    const field = event.target.closest?.("[data-field]");
    if (field) {
      errors.clear("submit", field);
      if (!form.querySelector('.error-line[data-sources~="submit"]')) {
        clearError(byId("form-errors"));
      }
    }
  });
  loadStudies();
}

start();
