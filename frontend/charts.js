// Rendering of server-built Plotly figures, shares and run status badges.
// Plotly is the one global: /static/vendor/plotly.min.js loads it with a classic script tag.

const PLOTLY_CONFIG = { responsive: true, displaylogo: false };
// Charts that follow their container's width. Plotly's `responsive` follows only the window,
// so a chart drawn alone in a grid row kept its width when a second chart joined the row.
const resizedCharts = new WeakSet();
// Below this chart width the figure title is drawn smaller.
const NARROW_CHART_PX = 520;

/**
 * Draw or update a Plotly figure ({data, layout}) built by the server.
 * Plotly.react diffs against what is drawn, so live updates do not flicker, and
 * a fixed `uirevision` keeps the user's zoom and legend choices across updates.
 */
export function renderFigure(element, figure, uirevision) {
  if (typeof Plotly === "undefined") {
    element.textContent = "Charts are unavailable: /static/vendor/plotly.min.js did not load.";
    return Promise.resolve();
  }
  const layout = { ...figure.layout, autosize: true, uirevision };
  // The container sets the size, so a width from the server would break narrow windows.
  delete layout.width;
  if (element.clientWidth > 0 && element.clientWidth < NARROW_CHART_PX && layout.title) {
    // A long title such as "Dot count: 71% of 1000 samples unrecognized" is cut off on a phone.
    const title = typeof layout.title === "string" ? { text: layout.title } : layout.title;
    layout.title = { ...title, font: { ...title.font, size: 12 } };
  }
  followContainerWidth(element);
  return Plotly.react(element, figure.data || [], layout, PLOTLY_CONFIG);
}

/** Redraw a chart at its container's size whenever the container's width changes. */
function followContainerWidth(element) {
  if (resizedCharts.has(element) || typeof ResizeObserver === "undefined") {
    return;
  }
  resizedCharts.add(element);
  let width = element.clientWidth;
  new ResizeObserver(() => {
    if (element.clientWidth === width || !element.isConnected || !element.data) {
      return;
    }
    width = element.clientWidth;
    Plotly.Plots.resize(element);
  }).observe(element);
}

/** Format a share in 0..1 as a percentage with one decimal, e.g. "71.3%". */
export function formatShare(share) {
  if (typeof share !== "number" || !Number.isFinite(share)) {
    return "—";
  }
  return `${(share * 100).toFixed(1)}%`;
}

/** Return the unrecognized share of a Histogram, computing it when the field is absent. */
export function unrecognizedShare(histogram) {
  if (!histogram) {
    return null;
  }
  if (typeof histogram.unrecognized_share === "number") {
    return histogram.unrecognized_share;
  }
  return histogram.total ? histogram.unrecognized / histogram.total : 0;
}

/** Create a status badge whose text names the status, so colour is never the only cue. */
export function statusBadge(status) {
  const badge = document.createElement("span");
  badge.className = `badge badge-${status}`;
  badge.dataset.testid = "run-status";
  badge.textContent = status;
  return badge;
}

export function updateStatusBadge(badge, status) {
  badge.className = `badge badge-${status}`;
  badge.textContent = status;
}
