// Form widgets of single values (numbers, words, choices, lists of them) and the text
// helpers that describe a schema's range, count and default in the form's hints.
//
// A widget is {element, read(), write(value), control}. `read` returns the value to send
// as JSON. A typed value that is not valid (a word in a list of numbers) is sent as
// typed, so the server's 422 names it instead of the page dropping it silently.

const NUMBER_TOKEN = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
export function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name === "text") {
      node.textContent = value;
    } else if (name === "className") {
      node.className = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  node.append(...children);
  return node;
}

export const clone = (value) => (value === undefined ? undefined : structuredClone(value));
export const sameJson = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/** Split "2, 4" into [2, 4]. Where numbers are expected, a token that is no number stays a string. */
export function parseList(text, numeric) {
  return text
    .split(numeric ? /[\s,;]+/ : /\s*[,;]\s*/)
    .map((token) => token.trim())
    .filter((token) => token !== "")
    .map((token) => (numeric && NUMBER_TOKEN.test(token) ? Number(token) : token));
}

export function formatNumber(value) {
  return typeof value === "number" ? value.toLocaleString("en-US", { maximumFractionDigits: 6 }) : String(value);
}

export function defaultText(value) {
  if (Array.isArray(value)) {
    if (value.length === 0) {
      return "Default: none.";
    }
    const flat = value.every((item) => item === null || typeof item !== "object");
    return `Default: ${flat ? value.join(", ") : JSON.stringify(value)}.`;
  }
  return typeof value === "object" ? `Default: ${JSON.stringify(value)}.` : `Default: ${formatNumber(value)}.`;
}

// "from 1 to 16", "above 0, at most 1", "at least 64".
export function rangeText(schema) {
  const bound = (value, joined, alone) =>
    value === undefined ? null : { joined: `${joined} ${formatNumber(value)}`, alone: `${alone} ${formatNumber(value)}` };
  const lower = bound(schema.minimum, "from", "at least") ?? bound(schema.exclusiveMinimum, "above", "above");
  const upper = bound(schema.maximum, "to", "at most") ?? bound(schema.exclusiveMaximum, "below", "below");
  if (lower && upper) {
    const inclusive = schema.minimum !== undefined && schema.maximum !== undefined;
    return inclusive ? `${lower.joined} ${upper.joined}` : `${lower.alone}, ${upper.alone}`;
  }
  return (lower || upper)?.alone ?? "";
}

export function countText(schema, noun) {
  const { minItems: min, maxItems: max } = schema;
  if (min !== undefined && max !== undefined) {
    return min === max ? `${min} ${noun}` : `${min} to ${max} ${noun}`;
  }
  if (min !== undefined) {
    return `at least ${min} ${noun}`;
  }
  return max !== undefined ? `at most ${max} ${noun}` : "";
}

// The slot where validation messages about a field or group appear.
export function errorSlot(id) {
  return element("p", { className: "field-error", id, "data-testid": "field-error", role: "alert", hidden: true });
}

export const capitalized = (text) => text.charAt(0).toUpperCase() + text.slice(1);

/** Return `text` as nodes, each `name` between backticks (as docstrings mark names) as <code>. */
export function codeSpans(text) {
  return text.split(/`([^`]+)`/).map((part, index) => (index % 2 ? element("code", { text: part }) : part));
}

export function sentence(text) {
  if (!text) {
    return "";
  }
  const capital = capitalized(text.trim());
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

// ---- Widgets of single values ----

export function numberWidget(schema, label) {
  const input = element("input", {
    type: "number",
    min: schema.minimum,
    max: schema.maximum,
    step: schema.type === "integer" ? "1" : "any",
    inputmode: schema.type === "integer" ? "numeric" : "decimal",
    "aria-label": label,
  });
  return {
    element: input,
    control: input,
    // An empty box is sent as null: a nullable field takes it, any other is named by the server.
    read: () => (input.value.trim() === "" ? null : Number(input.value)),
    write: (value) => {
      input.value = value === null || value === undefined ? "" : String(value);
    },
  };
}

export function stringWidget(schema, nullable, label) {
  const input = element("input", { type: "text", autocomplete: "off", "aria-label": label });
  return {
    element: input,
    control: input,
    read: () => (nullable && input.value === "" ? null : input.value),
    write: (value) => {
      input.value = value ?? "";
    },
  };
}

// Option values are the choices as text, so a test can pick an option by value.
// `read` returns the typed choice: the number 32, not the text "32".
export function enumWidget(schema, nullable, label) {
  const select = element("select", { "aria-label": label });
  const choices = [];
  const addOption = (value) => {
    choices.push(value);
    const text = value === null ? "" : String(value);
    select.append(element("option", { value: text, text: value === null ? "—" : text }));
  };
  for (const value of nullable ? [null, ...schema.enum] : schema.enum) {
    addOption(value);
  }
  return {
    element: select,
    control: select,
    read: () => clone(choices[select.selectedIndex]),
    write: (value) => {
      if (value === undefined) {
        select.selectedIndex = 0;
        return;
      }
      let index = choices.findIndex((choice) => sameJson(choice, value));
      if (index < 0) {
        // A value the schema does not list (from an older study) is kept, so the server names it.
        addOption(value);
        index = choices.length - 1;
      }
      select.selectedIndex = index;
    },
  };
}

export function booleanWidget(label) {
  const input = element("input", { type: "checkbox", "aria-label": label });
  return {
    element: input,
    control: input,
    read: () => input.checked,
    write: (value) => {
      input.checked = Boolean(value);
    },
  };
}

/** Build a text box of comma-separated numbers or words. `item` is the schema of one entry. */
export function scalarListWidget(item, nullable, label) {
  const numeric = item.type === "integer" || item.type === "number";
  const input = element("input", {
    type: "text",
    autocomplete: "off",
    inputmode: numeric ? "decimal" : undefined,
    "aria-label": label,
  });
  return {
    element: input,
    control: input,
    read: () => {
      const values = parseList(input.value, numeric);
      return nullable && values.length === 0 ? null : values;
    },
    write: (value) => {
      input.value = Array.isArray(value) ? value.join(", ") : "";
    },
  };
}

/** Build a checkbox per choice of `item`, the schema of one entry. `read` keeps the schema's order. */
export function choiceListWidget(item, nullable, label) {
  const group = element("div", { className: "choice-list", role: "group", "aria-label": label });
  const boxes = item.enum.map((value) => {
    const box = element("input", { type: "checkbox", value: String(value) });
    group.append(element("label", { className: "choice" }, [box, ` ${value}`]));
    return { box, value };
  });
  return {
    element: group,
    read: () => {
      const chosen = boxes.filter(({ box }) => box.checked).map(({ value }) => value);
      return nullable && chosen.length === 0 ? null : chosen;
    },
    write: (value) => {
      const chosen = Array.isArray(value) ? value : [];
      for (const { box, value: option } of boxes) {
        box.checked = chosen.some((entry) => sameJson(entry, option));
      }
    },
  };
}

export function jsonWidget(label) {
  const area = element("textarea", { rows: "2", spellcheck: "false", "aria-label": label });
  return {
    element: area,
    control: area,
    read: () => {
      const text = area.value.trim();
      if (text === "") {
        return null;
      }
      try {
        return JSON.parse(text);
      } catch (error) {
        return text;
      }
    },
    write: (value) => {
      area.value = value === undefined || value === null ? "" : JSON.stringify(value);
    },
  };
}
