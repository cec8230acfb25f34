// The live view of a dataset design: a grid of training images and the histograms of
// their true features, both redrawn shortly after each change to the design.

import { ApiError, clearError, postForBlob, postJson, showError } from "/static/api.js";
import { renderFigure } from "/static/charts.js";
import { fieldSummary } from "/static/field_errors.js";

const REFRESH_DELAY_MS = 300;

/**
 * Turn messages of a request whose body was the dataset alone ("counts[0]: ...") into
 * messages about the study's fields ("dataset.counts[0]: ..."), so they match the form.
 */
export function datasetItems(items) {
  return items.map((item) => {
    if (!item.field) {
      return { field: "dataset", message: item.message };
    }
    const relative = item.field === "body" ? "" : item.field;
    const field = relative ? `dataset.${relative}` : "dataset";
    const message = item.message.startsWith(`${item.field}:`)
      ? `${field}${item.message.slice(item.field.length)}`
      : item.message;
    return { field, message };
  });
}

// Each request kind keeps only its latest call: a newer design aborts the older request.
class LatestRequest {
  constructor() {
    this.controller = null;
  }

  start() {
    this.controller?.abort();
    this.controller = new AbortController();
    return this.controller;
  }

  isCurrent(controller) {
    return this.controller === controller;
  }
}

export class DatasetPreview {
  /**
   * `readDataset` returns the dataset design. `onInvalid(items)` receives its 422 items
   * and returns those it could not show next to a field.
   */
  constructor({ readDataset, onValid, onInvalid }) {
    this.readDataset = readDataset;
    this.onValid = onValid;
    this.onInvalid = onInvalid;
    this.image = document.getElementById("dataset-preview");
    this.frame = document.getElementById("preview-frame");
    this.error = document.getElementById("preview-error");
    this.charts = document.getElementById("histograms");
    this.chartsError = document.getElementById("histograms-error");
    this.timer = null;
    this.objectUrl = null;
    this.imageRequest = new LatestRequest();
    this.histogramRequest = new LatestRequest();
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), REFRESH_DELAY_MS);
  }

  refresh() {
    clearTimeout(this.timer);
    const dataset = this.readDataset();
    this.refreshImage(dataset);
    this.refreshHistograms(dataset);
  }

  async refreshImage(dataset) {
    const controller = this.imageRequest.start();
    this.frame.setAttribute("aria-busy", "true");
    this.frame.dataset.state = "loading";
    try {
      const blob = await postForBlob("/api/datasets/preview", dataset, { signal: controller.signal });
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
      if (!this.imageRequest.isCurrent(controller)) {
        URL.revokeObjectURL(url);
        return;
      }
      const previousUrl = this.objectUrl;
      this.objectUrl = url;
      this.image.src = url;
      if (previousUrl) {
        URL.revokeObjectURL(previousUrl);
      }
      this.image.hidden = false;
      clearError(this.error);
      this.frame.dataset.state = "ready";
      this.onValid();
    } catch (error) {
      if (error.name === "AbortError" || !this.imageRequest.isCurrent(controller)) {
        return;
      }
      this.image.hidden = true;
      const items = error instanceof ApiError ? datasetItems(error.items) : [];
      if (error instanceof ApiError && error.status === 422) {
        const unplaced = this.onInvalid(items);
        showError(this.error, fieldSummary(error, items, unplaced));
      } else {
        showError(this.error, items.length ? new ApiError(error.status, error.message, items) : error);
      }
      this.frame.dataset.state = "invalid";
    } finally {
      if (this.imageRequest.isCurrent(controller)) {
        this.frame.setAttribute("aria-busy", "false");
      }
    }
  }

  async refreshHistograms(dataset) {
    const controller = this.histogramRequest.start();
    this.charts.setAttribute("aria-busy", "true");
    this.charts.dataset.state = "loading";
    try {
      const body = await postJson("/api/datasets/histograms", dataset, { signal: controller.signal });
      if (!this.histogramRequest.isCurrent(controller)) {
        return;
      }
      clearError(this.chartsError);
      await this.drawHistograms(body);
      this.charts.dataset.state = "ready";
    } catch (error) {
      if (error.name === "AbortError" || !this.histogramRequest.isCurrent(controller)) {
        return;
      }
      // The preview reports an invalid design next to its fields; here the charts just go.
      this.removeCharts([...this.charts.children]);
      if (error instanceof ApiError && error.status === 422) {
        showError(this.chartsError, new Error("No histograms until the dataset design is valid."));
      } else {
        const items = error instanceof ApiError ? datasetItems(error.items) : [];
        showError(this.chartsError, items.length ? new ApiError(error.status, error.message, items) : error);
      }
      this.charts.dataset.state = "invalid";
    } finally {
      if (this.histogramRequest.isCurrent(controller)) {
        this.charts.setAttribute("aria-busy", "false");
      }
    }
  }

  removeCharts(charts) {
    for (const chart of charts) {
      if (typeof Plotly !== "undefined") {
        Plotly.purge(chart);
      }
      chart.remove();
    }
  }

  // One chart per feature, in the family's order; charts of features still present are
  // updated in place, so switching between similar designs does not flicker.
  async drawHistograms(body) {
    const existing = new Map([...this.charts.children].map((chart) => [chart.dataset.feature, chart]));
    const charts = body.features.map((feature) => {
      let chart = existing.get(feature.name);
      if (!chart) {
        chart = document.createElement("div");
        chart.className = "chart histogram-chart";
        chart.dataset.feature = feature.name;
        chart.dataset.testid = "histogram";
        chart.setAttribute("role", "img");
      }
      chart.setAttribute("aria-label", `Histogram of ${feature.title} over ${body.n_images} training images`);
      return { chart, feature };
    });
    const kept = new Set(charts.map(({ chart }) => chart));
    this.removeCharts([...existing.values()].filter((chart) => !kept.has(chart)));
    this.charts.replaceChildren(...kept);
    this.charts.dataset.family = body.family;
    await Promise.all(
      charts.map(({ chart, feature }) => renderFigure(chart, feature.figure, `training-${feature.name}`)),
    );
  }
}
