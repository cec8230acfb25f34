// Validation messages shown next to the design fields they name.
//
// Several requests check parts of the design (the preview checks the dataset, the
// parameter count the model, the submit everything), so each message line records
// the sources that reported it, and each source replaces only its own lines. Each
// message appears once, next to its field: the boxes that summarize a request's errors
// name those fields and repeat only the messages that no field shows.

import { ApiError } from "/static/api.js";
import { fieldId } from "/static/schema_form.js";

// "dataset.held_out[2].shapes[0]" -> ["dataset", "held_out", "[2]", "shapes", "[0]"].
function pathParts(field) {
  return field.match(/\[\d+\]|[^.[\]]+/g) || [];
}

function joinParts(parts) {
  return parts.reduce((path, part) => (part.startsWith("[") || !path ? path + part : `${path}.${part}`), "");
}

/**
 * Return the error for a summary box after `items` of a 422 `error` were shown next to
 * their fields: the messages in `unplaced` in full, and the names of the other fields.
 */
export function fieldSummary(error, items, unplaced) {
  const placed = items.filter((item) => !unplaced.includes(item));
  const fields = [...new Set(placed.map((item) => item.field))];
  const lines = [...unplaced];
  if (fields.length) {
    const noun = fields.length === 1 ? "field" : "fields";
    lines.push({ field: null, message: `Fix the marked ${noun}: ${fields.join(", ")}.` });
  }
  if (!lines.length) {
    return error;
  }
  return new ApiError(error.status, lines.map((line) => line.message).join("\n"), lines);
}

export class FieldErrors {
  constructor(root) {
    this.root = root;
  }

  /** Return the element for a server field: the field itself, else its nearest enclosing group. */
  containerFor(field) {
    const parts = pathParts(field || "");
    while (parts.length) {
      const path = joinParts(parts);
      const container = this.root.querySelector(`[data-field="${CSS.escape(path)}"]`);
      if (container) {
        return container;
      }
      parts.pop();
    }
    return null;
  }

  /** Show each {field, message} next to its field; return the items that name no field shown. */
  show(source, items) {
    const unplaced = [];
    for (const item of items) {
      const container = this.containerFor(item.field);
      if (container) {
        this.addLine(container, source, item.message);
      } else {
        unplaced.push(item);
      }
    }
    return unplaced;
  }

  addLine(container, source, message) {
    const slot = container.querySelector(":scope > .field-error");
    if (!slot) {
      return;
    }
    let line = [...slot.children].find((existing) => existing.textContent === message);
    if (!line) {
      line = document.createElement("span");
      line.className = "error-line";
      line.textContent = message;
      line.dataset.sources = "";
      slot.append(line);
    }
    const sources = new Set(line.dataset.sources.split(" ").filter(Boolean));
    sources.add(source);
    line.dataset.sources = [...sources].join(" ");
    slot.hidden = false;
    this.markInvalid(container, true);
  }

  /** Remove the lines that only `source` reported, in all fields or within `container`. */
  clear(source, container = this.root) {
    for (const line of container.querySelectorAll(".field-error > .error-line")) {
      const sources = new Set(line.dataset.sources.split(" ").filter(Boolean));
      sources.delete(source);
      line.dataset.sources = [...sources].join(" ");
      if (sources.size === 0) {
        const slot = line.parentElement;
        line.remove();
        if (slot.children.length === 0) {
          slot.hidden = true;
          this.markInvalid(slot.parentElement, false);
        }
      }
    }
  }

  markInvalid(container, invalid) {
    const path = container.dataset.field;
    const control = path === undefined ? null : document.getElementById(fieldId(path));
    if (!control || !container.contains(control)) {
      return;
    }
    if (invalid) {
      control.setAttribute("aria-invalid", "true");
    } else {
      control.removeAttribute("aria-invalid");
    }
  }

  /** Return the first control marked invalid, to move the focus to. */
  firstInvalid() {
    return this.root.querySelector('[aria-invalid="true"]');
  }
}
