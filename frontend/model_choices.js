// Help with the model part of a design: the parameter count of every architecture,
// shown next to the architecture choice, and presets that fill the model and training.

import { ApiError, clearError, getJson, postJson, showError } from "/static/api.js";
import { fieldSummary } from "/static/field_errors.js";

const REFRESH_DELAY_MS = 300;

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  node.textContent = text;
  return node;
}

/** Report a request's 422 items about fields other than the model as dataset fields. */
function parameterItems(items) {
  return items.map((item) => (item.field === "image_size" ? { ...item, field: "dataset.image_size" } : item));
}

export class ParameterCounts {
  /**
   * `readModel` returns the model design and `readImageSize` the dataset's image size;
   * `onValid()` and `onInvalid(items)` report whether the server accepted the model, and
   * `onInvalid` returns the items it could not show next to a field.
   */
  constructor({ modelBox, readModel, readImageSize, onValid, onInvalid }) {
    this.modelBox = modelBox;
    this.readModel = readModel;
    this.readImageSize = readImageSize;
    this.onValid = onValid;
    this.onInvalid = onInvalid;
    this.timer = null;
    this.controller = null;
    this.lastBody = null;
    this.counts = null;
    this.panel = element("div", { class: "parameter-counts", "data-testid": "parameter-counts" });
    this.panel.setAttribute("aria-live", "polite");
    this.table = element("table");
    this.caption = element("caption");
    this.table.append(this.caption, element("tbody"));
    this.error = element("p", { class: "field-error", "data-testid": "parameter-counts-error" });
    this.error.hidden = true;
    this.panel.append(this.table, this.error);
  }

  // The model's fields are rebuilt when its kind changes, so the panel moves in again.
  attach() {
    const field = this.modelBox.querySelector('[data-field="model.architecture"]');
    if (!field) {
      this.panel.remove();
      return;
    }
    field.querySelector("select").after(this.panel);
    field.classList.add("field-wide");
    this.highlight();
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), REFRESH_DELAY_MS);
  }

  async refresh() {
    clearTimeout(this.timer);
    const model = this.readModel();
    const body = { model: { ...model, architecture: undefined }, image_size: this.readImageSize() };

    // Counts cover every architecture, so choosing another one needs no new request.
    const key = JSON.stringify(body);
    if (key === this.lastBody) {
      this.highlight();
      return;
    }
    this.lastBody = key;
    body.model.architecture = model.architecture;

    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.panel.dataset.state = "loading";
    try {
      const counts = await postJson("/api/models/parameters", body, { signal: controller.signal });
      if (this.controller !== controller) {
        return;
      }
      this.counts = counts;
      this.draw();
      clearError(this.error);
      this.table.hidden = false;
      this.panel.dataset.state = "ready";
      this.onValid();
    } catch (error) {
      if (error.name === "AbortError" || this.controller !== controller) {
        return;
      }
      // A failed request is tried again at the next change, even with the same design.
      this.lastBody = null;
      this.table.hidden = true;
      let reason = error;
      if (error instanceof ApiError && error.status === 422) {
        const items = parameterItems(error.items);
        reason = fieldSummary(error, items, this.onInvalid(items));
      }
      showError(this.error, new Error(`Parameter counts unavailable: ${reason.message}`));
      this.panel.dataset.state = "invalid";
    }
  }

  draw() {
    const { parameters, image_size: size, kind } = this.counts;
    this.caption.textContent = `Trainable parameters of this ${kind} at ${size} × ${size}`;
    const rows = Object.entries(parameters).map(([architecture, count]) => {
      const row = element("tr", { "data-architecture": architecture });
      row.append(element("th", { scope: "row" }, architecture), element("td", {}, count.toLocaleString("en-US")));
      return row;
    });
    this.table.tBodies[0].replaceChildren(...rows);
    this.highlight();
  }

  highlight() {
    const chosen = this.readModel().architecture;
    for (const row of this.table.tBodies[0].rows) {
      const current = row.dataset.architecture === chosen;
      row.classList.toggle("current", current);
      if (current) {
        row.setAttribute("aria-current", "true");
      } else {
        row.removeAttribute("aria-current");
      }
    }
  }
}

export class PresetPicker {
  /** `apply(preset)` fills the form from {model, training}. */
  constructor({ modelBox, apply }) {
    this.apply = apply;
    this.presets = {};
    this.select = element("select", { id: "preset", "data-testid": "preset-select" });
    this.select.setAttribute("aria-describedby", "preset-hint");
    this.hint = element("p", { class: "hint", id: "preset-hint" });
    this.error = element("p", { class: "field-error", "data-testid": "preset-error", role: "alert" });
    this.error.hidden = true;
    const label = element("label", { for: "preset" }, "Preset");
    this.box = element("div", { class: "field preset-field", "data-field": "preset" });
    this.box.append(label, this.select, this.hint, this.error);
    modelBox.querySelector(":scope > legend").after(this.box);
    this.select.addEventListener("change", () => this.choose());
    this.showHint();
  }

  async load() {
    try {
      this.presets = await getJson("/api/presets");
    } catch (error) {
      this.select.disabled = true;
      showError(this.error, new Error(`Presets unavailable: ${error.message}`));
      return;
    }
    const none = element("option", { value: "" }, "None: set the fields by hand");
    const groups = Object.entries(this.presets).map(([kind, presets]) => {
      const group = element("optgroup", { label: kind });
      for (const name of Object.keys(presets)) {
        group.append(element("option", { value: `${kind}/${name}` }, `${kind}: ${name}`));
      }
      return group;
    });
    this.select.replaceChildren(none, ...groups);
  }

  choose() {
    const [kind, name] = this.select.value.split("/");
    const preset = this.presets[kind]?.[name];
    if (preset) {
      this.apply({ model: { ...preset.model, kind }, training: preset.training });
    }
    this.showHint();
  }

  showHint() {
    const [kind, name] = this.select.value.split("/");
    const preset = this.presets[kind]?.[name];
    this.hint.textContent = preset
      ? `${preset.description} Applied to the model and training fields below.`
      : "Fills the model and training fields with named settings: quick trains in a few CPU minutes, " +
        "paper uses the published settings and is meant for a GPU.";
  }

  /** Show that the fields no longer match the chosen preset. */
  markEdited() {
    if (this.select.value !== "") {
      this.select.value = "";
      this.showHint();
    }
  }
}
