// Buttons that save a drawn Plotly chart as PNG or SVG, through Plotly.downloadImage.

const EXPORT_FORMATS = ["png", "svg"];
// Pixel size of exported images; SVG keeps the same aspect ratio.
const EXPORT_SIZE = { width: 1000, height: 560 };

/** Return a row of buttons that download the chart in `element` as `filename`.png or .svg. */
export function chartExportButtons(element, filename) {
  const row = document.createElement("div");
  row.className = "chart-export";
  for (const format of EXPORT_FORMATS) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link-button";
    button.dataset.format = format;
    button.textContent = `Save ${format.toUpperCase()}`;
    button.addEventListener("click", () => {
      if (typeof Plotly === "undefined" || !element.data) {
        return;
      }
      Plotly.downloadImage(element, { format, filename, ...EXPORT_SIZE });
    });
    row.append(button);
  }
  return row;
}

/** Turn a title into a file name: lower case letters, digits and dashes. */
export function fileName(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 80) || "chart";
}
