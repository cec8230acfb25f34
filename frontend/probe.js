// The probe page: upload samples made elsewhere and show their features, histograms and scores.

import { ApiError, clearError, request, showError } from "/static/api.js";

// The table shows at most this many images, and the note beside it gives the total.
const MAX_TABLE_ROWS = 200;
// These families compare samples with a study's training set, so the probe needs a study_id.
const STUDY_FAMILIES = new Set(["combinations", "shapes"]);
const UNRECOGNIZED_LABEL = "unrecognized";
// The server's MAX_UPLOAD_BYTES. Checking here spares uploading a file that the server rejects with a 413.
const MAX_UPLOAD_BYTES = 64 * 2 ** 20;

const byId = (id) => document.getElementById(id);
const form = byId("probe-form");

function fieldContainer(name) {
  return form.querySelector(`[data-field="${CSS.escape(name)}"]`);
}

function updateFields() {
  const family = byId("probe-family").value;
  fieldContainer("study_id").hidden = !STUDY_FAMILIES.has(family);
  fieldContainer("dot_radius").hidden = family !== "dots";
}

function clearMessages() {
  clearError(byId("probe-error"));
  for (const line of form.querySelectorAll(".field-error")) {
    line.remove();
  }
}

// Validation items carry `field`, and the probe route starts its other messages with "field: ".
function fieldOf(item) {
  if (item.field) {
    return item.field;
  }
  const match = /^(\w+): /.exec(item.message);
  return match ? match[1] : null;
}

/** Show each message next to the visible field it names, and the rest in the error box. */
function showMessages(error) {
  const items = error instanceof ApiError && error.items.length ? error.items : [{ field: null, message: error.message }];
  const unplaced = [];
  for (const item of items) {
    const container = fieldContainer(fieldOf(item) || "");
    if (container && !container.hidden) {
      const line = document.createElement("p");
      line.className = "field-error";
      line.dataset.testid = "field-error";
      line.textContent = item.message;
      container.append(line);
    } else {
      unplaced.push(item);
    }
  }
  if (unplaced.length) {
    showError(byId("probe-error"), new ApiError(error.status || 0, "", unplaced));
  }
}

function formData() {
  const data = new FormData();
  const file = byId("probe-file").files[0];
  if (!file) {
    throw new ApiError(0, "", [{ field: "file", message: "file: missing, choose an .npz, .npy or .zip file" }]);
  }
  if (file.size > MAX_UPLOAD_BYTES) {
    const message = `file: ${file.name} has ${file.size.toLocaleString("en")} bytes; files may have at most ${MAX_UPLOAD_BYTES.toLocaleString("en")} bytes (64 MiB)`;
    throw new ApiError(413, "", [{ field: "file", message }]);
  }
  data.append("file", file);
  data.append("family", byId("probe-family").value);
  for (const [name, id] of [["study_id", "probe-study-id"], ["dot_radius", "probe-dot-radius"]]) {
    const input = byId(id);
    if (fieldContainer(name).hidden) {
      continue;
    }
    // A number box reads as empty when its text is not a number, so that text would be lost.
    if (input.validity.badInput) {
      const message = `${name}: the text in the box is not a number; enter a number or leave it empty`;
      throw new ApiError(422, "", [{ field: name, message }]);
    }
    const value = input.value.trim();
    if (value) {
      data.append(name, value);
    }
  }
  return data;
}

function drawHistogram(name, histogram) {
  const labels = histogram.labels.length
    ? histogram.labels
    : histogram.counts.map((_, i) => `${histogram.edges[i]}–${histogram.edges[i + 1]}`);
  const chart = document.createElement("div");
  chart.className = "chart";
  chart.dataset.testid = "probe-histogram";
  chart.dataset.feature = name;
  byId("probe-charts").append(chart);
  const unrecognizedPercent = (100 * histogram.unrecognized_share).toFixed(1);
  window.Plotly.newPlot(
    chart,
    [
      {
        type: "bar",
        x: [...labels, UNRECOGNIZED_LABEL],
        y: [...histogram.counts, histogram.unrecognized],
        marker: { color: [...labels.map(() => "#3b6ea5"), "#999999"] },
        hovertemplate: "%{x}: %{y} images<extra></extra>",
      },
    ],
    {
      title: { text: `${name} (${unrecognizedPercent}% unrecognized of ${histogram.total})` },
      xaxis: { type: "category", title: { text: name } },
      yaxis: { title: { text: "images" } },
      margin: { t: 50, r: 20, b: 60, l: 60 },
      height: 320,
    },
    { displaylogo: false, responsive: true },
  );
}

function row(cells, tag = "td") {
  const tr = document.createElement("tr");
  for (const content of cells) {
    const cell = document.createElement(tag);
    cell.textContent = content;
    tr.append(cell);
  }
  return tr;
}

function formatValue(value) {
  if (value === null || value === undefined) {
    return "—";
  }
  return typeof value === "number" && !Number.isInteger(value) ? value.toPrecision(4) : String(value);
}

function showImages(images) {
  const features = images.length ? Object.keys(images[0]).filter((key) => key !== "index" && key !== "name") : [];
  const hasNames = images.some((image) => "name" in image);
  const columns = ["index", ...(hasNames ? ["name"] : []), ...features];
  byId("probe-images-head").replaceChildren(...row(columns, "th").children);
  const tableImages = images.slice(0, MAX_TABLE_ROWS);
  const rows = tableImages.map((image) => {
    const tr = row(columns.map((column) => formatValue(image[column])));
    tr.dataset.testid = "probe-image";
    return tr;
  });
  byId("probe-images-rows").replaceChildren(...rows);
  byId("probe-images-note").textContent =
    images.length > tableImages.length
      ? `The first ${tableImages.length} of ${images.length} images; — marks a value the probe could not read.`
      : `All ${images.length} images; — marks a value the probe could not read.`;
}

function showResult(body) {
  const [height, width] = body.image_size;
  const study = body.study_id === null ? "no study" : `study ${body.study_id}`;
  byId("probe-summary").textContent =
    `${body.n_images} images of ${width}x${height} pixels from a ${body.source.format} file, probed as ${body.family} with ${study}.`;
  byId("probe-charts").replaceChildren();
  for (const [name, histogram] of Object.entries(body.histograms)) {
    drawHistogram(name, histogram);
  }
  const scores = Object.entries(body.scores).map(([name, value]) => row([name, value === null ? "no value" : formatValue(value)]));
  byId("probe-scores").replaceChildren(...(scores.length ? scores : [row(["This family has no scores."])]));
  showImages(body.images);
  byId("probe-results").hidden = false;
}

async function submit(event) {
  event.preventDefault();
  clearMessages();
  const button = byId("probe-submit");
  const status = byId("probe-status");
  try {
    const body = formData();
    button.disabled = true;
    status.textContent = "Probing…";
    const response = await request("/api/probe", { method: "POST", body, headers: { Accept: "application/json" } });
    showResult(await response.json());
  } catch (error) {
    byId("probe-results").hidden = true;
    showMessages(error);
  } finally {
    button.disabled = false;
    status.textContent = "";
  }
}

byId("probe-family").addEventListener("change", updateFields);
form.addEventListener("submit", submit);
updateFields();
