// Form widgets built from the JSON schema that pydantic writes for a design, so every
// field appears with its range, default, choices and description, and a field added to
// the design classes appears in the form without editing the page. Lists, tuples,
// objects and unions are built here from the single-value widgets of form_widgets.js.

import {
  booleanWidget,
  capitalized,
  choiceListWidget,
  clone,
  codeSpans,
  countText,
  defaultText,
  element,
  enumWidget,
  errorSlot,
  jsonWidget,
  numberWidget,
  rangeText,
  sameJson,
  scalarListWidget,
  sentence,
  stringWidget,
} from "/static/form_widgets.js";

const MAX_REF_DEPTH = 32;
// A field whose help is longer than this takes a whole row, so the help stays readable.
const LONG_HINT_CHARS = 140;

/** Return the element id of the control for a design path such as "training.batch_size". */
export function fieldId(path) {
  return path.replace(/[^A-Za-z0-9]+/g, "-").replace(/-$/, "");
}

/** Return the label of property `name`: its schema title, else its name in sentence case. */
export function fieldTitle(name, schema) {
  return schema?.title || capitalized(name.replaceAll("_", " "));
}

/** Builds widgets for the schemas under one root schema, whose `$defs` they may reference. */
export class SchemaForm {
  constructor(rootSchema, options = {}) {
    this.root = rootSchema;
    this.defs = rootSchema.$defs || {};
    // startValue(path, tag) returns a starting value for a union variant, or undefined.
    this.startValue = options.startValue || (() => undefined);
  }

  // ---- Reading schemas ----

  resolve(schema) {
    let current = schema || {};
    for (let depth = 0; depth < MAX_REF_DEPTH; depth += 1) {
      if (typeof current.$ref === "string") {
        const { $ref: ref, ...rest } = current;
        const target = this.defs[ref.replace(/^#\/\$defs\//, "")];
        if (!target) {
          throw new Error(`the design schema references ${ref}, which it does not define`);
        }
        current = { ...target, ...rest };
      } else if (Array.isArray(current.allOf) && current.allOf.length === 1) {
        const { allOf, ...rest } = current;
        current = { ...this.resolve(allOf[0]), ...rest };
      } else {
        return current;
      }
    }
    throw new Error("the design schema nests $ref too deeply");
  }

  // `X | None` arrives as anyOf [X, {type: null}]: the widget of X, where empty means null.
  unwrap(rawSchema) {
    const schema = this.resolve(rawSchema);
    const options = schema.anyOf;
    if (Array.isArray(options) && !schema.discriminator) {
      const others = options.filter((option) => option.type !== "null");
      if (others.length === 1 && others.length < options.length) {
        const { anyOf, ...outer } = schema;
        return { schema: { ...this.resolve(others[0]), ...outer }, nullable: true };
      }
    }
    return { schema, nullable: false };
  }

  kindOf(schema) {
    if (schema.discriminator && (schema.oneOf || schema.anyOf)) {
      return "union";
    }
    if ("const" in schema) {
      return "const";
    }
    if (Array.isArray(schema.enum)) {
      return "enum";
    }
    switch (schema.type) {
      case "boolean":
        return "boolean";
      case "integer":
      case "number":
        return "number";
      case "string":
        return "string";
      case "object":
        return schema.properties ? "object" : "json";
      case "array": {
        if (Array.isArray(schema.prefixItems)) {
          return "tuple";
        }
        if (!schema.items) {
          return "json";
        }
        const { schema: item, nullable } = this.unwrap(schema.items);
        const itemKind = this.kindOf(item);
        if (!nullable && (itemKind === "number" || itemKind === "string")) {
          return "scalar-list";
        }
        return !nullable && itemKind === "enum" ? "choice-list" : "row-list";
      }
      default:
        return "json";
    }
  }

  variants(schema) {
    const property = schema.discriminator.propertyName;
    return (schema.oneOf || schema.anyOf).map((option) => {
      const variant = this.resolve(option);
      return { tag: variant.properties?.[property]?.const, schema: variant };
    });
  }

  /**
   * Return the labels of the fields of a design section, by property name, as the form
   * shows them. For a union, the variant is the one that `value` names ("family": "dots").
   */
  fieldTitles(rawSchema, value) {
    let { schema } = this.unwrap(rawSchema);
    if (this.kindOf(schema) === "union") {
      const tag = value?.[schema.discriminator.propertyName];
      schema = this.variants(schema).find((variant) => variant.tag === tag)?.schema ?? {};
    }
    const properties = Object.entries(schema.properties || {});
    return Object.fromEntries(properties.map(([name, property]) => [name, fieldTitle(name, this.resolve(property))]));
  }

  // ---- Starting values ----

  /** Return the schema's default, or for objects and unions one built from their parts. */
  initialValue(rawSchema) {
    const raw = this.resolve(rawSchema);
    if ("default" in raw) {
      return clone(raw.default);
    }
    const { schema } = this.unwrap(raw);
    switch (this.kindOf(schema)) {
      case "const":
        return schema.const;
      case "union":
        return this.variantStart("", this.variants(schema)[0]);
      case "object":
        return this.objectStart(schema);
      default:
        return undefined;
    }
  }

  objectStart(schema) {
    if (Array.isArray(schema.examples) && schema.examples.length) {
      return clone(schema.examples[0]);
    }
    const value = {};
    for (const [name, property] of Object.entries(schema.properties || {})) {
      const start = this.initialValue(property);
      if (start !== undefined) {
        value[name] = start;
      }
    }
    return value;
  }

  variantStart(path, variant) {
    return clone(this.startValue(path, variant.tag)) ?? this.objectStart(variant.schema);
  }

  // A value for a new list row: the default, else the smallest allowed value.
  placeholderValue(rawSchema) {
    const start = this.initialValue(rawSchema);
    const { schema } = this.unwrap(rawSchema);
    if (start !== undefined && start !== null && this.kindOf(schema) !== "object") {
      return start;
    }
    switch (this.kindOf(schema)) {
      case "enum":
        return schema.enum[0];
      case "boolean":
        return false;
      case "number": {
        const step = schema.type === "integer" ? 1 : 0.1;
        const value = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + step : 0);
        return schema.maximum !== undefined ? Math.min(value, schema.maximum) : value;
      }
      case "string":
        return "";
      case "tuple":
        return schema.prefixItems.map((item) => this.placeholderValue(item));
      case "object":
        // Properties without a default (required ones) get the smallest allowed value.
        return {
          ...Object.fromEntries(
            Object.entries(schema.properties).map(([name, property]) => [name, this.placeholderValue(property)]),
          ),
          ...start,
        };
      case "choice-list":
        return this.unwrap(schema.items).schema.enum.slice(0, schema.minItems ?? 0);
      case "scalar-list":
      case "row-list":
        return Array.from({ length: schema.minItems ?? 0 }, () => this.placeholderValue(schema.items));
      default:
        return [];
    }
  }

  // ---- Widgets ----

  /** Build the widget of one schema. `label` names it for screen readers where no label is shown. */
  widget(path, rawSchema, label) {
    const { schema, nullable } = this.unwrap(rawSchema);
    switch (this.kindOf(schema)) {
      case "union":
        return this.unionWidget(path, schema, label);
      case "object":
        return nullable ? this.optionalObjectWidget(path, schema, label) : this.objectWidget(path, schema, label);
      case "const":
        return { element: null, read: () => schema.const, write: () => {} };
      case "enum":
        return enumWidget(schema, nullable, label);
      case "boolean":
        return booleanWidget(label);
      case "number":
        return numberWidget(schema, label);
      case "string":
        return stringWidget(schema, nullable, label);
      case "scalar-list":
        return scalarListWidget(this.unwrap(schema.items).schema, nullable, label);
      case "choice-list":
        return choiceListWidget(this.unwrap(schema.items).schema, nullable, label);
      case "tuple":
        return this.tupleWidget(path, schema, nullable, label);
      case "row-list":
        return this.rowListWidget(path, schema, nullable, label);
      default:
        return jsonWidget(label);
    }
  }

  tupleWidget(path, schema, nullable, label) {
    const group = element("div", { className: "tuple", role: "group", "aria-label": label });
    const parts = schema.prefixItems.map((item, index) => {
      const part = this.widget(`${path}[${index}]`, item, `${label}, item ${index + 1}`);
      group.append(part.element);
      return part;
    });
    return {
      element: group,
      read: () => {
        const values = parts.map((part) => part.read());
        const empty = values.every((value) => value === null || value === "");
        return nullable && empty ? null : values;
      },
      write: (value) => {
        parts.forEach((part, index) => part.write(Array.isArray(value) ? value[index] : undefined));
      },
    };
  }

  rowListWidget(path, schema, nullable, label) {
    const container = element("div", { className: "row-list", role: "group", "aria-label": label });
    const list = element("ol", { className: "rows" });
    const add = element("button", { type: "button", className: "add-row", text: "Add" });
    container.append(list, add);
    let rows = [];

    const changed = () => container.dispatchEvent(new Event("input", { bubbles: true }));
    const render = (values) => {
      list.replaceChildren();
      rows = values.map((value, index) => {
        const rowPath = `${path}[${index}]`;
        const widget = this.widget(rowPath, schema.items, `${label}, row ${index + 1}`);
        widget.write(value);
        const remove = element("button", {
          type: "button",
          className: "remove-row",
          text: "Remove",
          "aria-label": `Remove ${label}, row ${index + 1}`,
        });
        remove.addEventListener("click", () => {
          const kept = rows.map((row) => row.widget.read()).filter((_, other) => other !== index);
          render(kept);
          changed();
        });
        const error = errorSlot(undefined);
        list.append(element("li", { className: "row", "data-field": rowPath }, [widget.element, remove, error]));
        return { widget };
      });
      add.disabled = schema.maxItems !== undefined && rows.length >= schema.maxItems;
    };

    add.addEventListener("click", () => {
      const values = rows.map((row) => row.widget.read());
      values.push(values.length ? clone(values[values.length - 1]) : this.placeholderValue(schema.items));
      render(values);
      changed();
    });
    return {
      element: container,
      read: () => {
        const values = rows.map((row) => row.widget.read());
        return nullable && values.length === 0 ? null : values;
      },
      write: (value) => {
        render(Array.isArray(value) ? value : []);
      },
    };
  }

  // ---- Fields: a widget with its label, help and error slot ----

  /** Wrap the widget of property `name` under `path` with a label, a hint and an error slot. */
  field(path, name, rawSchema) {
    const raw = this.resolve(rawSchema);
    const { schema, nullable } = this.unwrap(raw);
    const kind = this.kindOf(schema);
    const title = fieldTitle(name, raw);
    const widget = this.widget(path, raw, title);
    if (kind === "union" || kind === "object") {
      return { element: widget.element, widget, kind };
    }
    if (widget.element === null) {
      return { element: null, widget, kind };
    }

    const id = fieldId(path);
    // The JSON name is shown too, because the API and its error messages use it.
    const labelChildren = title.toLowerCase() === name ? [title] : [title, " ", element("code", { text: name })];
    if (nullable) {
      labelChildren.push(" ", element("span", { className: "optional", text: "(optional)" }));
    }
    const hintText = this.hintText(raw, schema, nullable, kind);
    const hint = element("p", { className: "hint", id: `${id}-hint` }, codeSpans(hintText));
    const error = errorSlot(`${id}-error`);
    const wide =
      ["scalar-list", "choice-list", "row-list", "tuple", "json"].includes(kind) ||
      name === "name" ||
      hintText.length > LONG_HINT_CHARS;
    const className = wide ? "field field-wide" : "field";
    const box = element("div", { className, "data-field": path, "data-kind": kind });
    let label;
    if (widget.control) {
      widget.control.id = id;
      widget.control.removeAttribute("aria-label");
      widget.control.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
      label = element("label", { for: id }, labelChildren);
    } else {
      label = element("span", { className: "group-label", id: `${id}-label` }, labelChildren);
      widget.element.id = id;
      widget.element.removeAttribute("aria-label");
      widget.element.setAttribute("aria-labelledby", `${id}-label`);
      widget.element.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
    }
    box.append(label, widget.element, hint, error);
    return { element: box, widget, kind };
  }

  hintText(raw, schema, nullable, kind) {
    const parts = [sentence(raw.description)];
    const range = rangeText(schema);
    if (kind === "number") {
      parts.push(sentence(`${schema.type === "integer" ? "An integer" : "A number"}${range ? ` ${range}` : ""}`));
    } else if (kind === "scalar-list") {
      const { schema: item } = this.unwrap(schema.items);
      const itemRange = rangeText(item);
      const each = itemRange ? `, each ${item.type === "integer" ? "an integer" : "a number"} ${itemRange}` : "";
      const count = countText(schema, "values");
      parts.push(sentence(`Comma-separated${count ? `, ${count}` : ""}${item.type === "string" ? "" : each}`));
    } else if (kind === "choice-list") {
      parts.push(sentence(countText(schema, "choices")));
    } else if (kind === "row-list") {
      parts.push(sentence(countText(schema, "rows")));
    } else if (kind === "tuple") {
      const ranges = schema.prefixItems.map((item) => rangeText(this.unwrap(item).schema)).filter(Boolean);
      const same = ranges.length === schema.prefixItems.length && ranges.every((text) => text === ranges[0]);
      parts.push(sentence(`${schema.prefixItems.length} values${same ? `, each ${ranges[0]}` : ""}`));
    } else if (kind === "string") {
      const length = countText({ minItems: schema.minLength, maxItems: schema.maxLength }, "characters");
      parts.push(sentence(length));
    } else if (kind === "json") {
      parts.push("JSON.");
    }
    if (nullable) {
      parts.push("Leave empty for none.");
    } else if (raw.default !== undefined && raw.default !== null && kind !== "enum") {
      parts.push(defaultText(raw.default));
    }
    return parts.filter(Boolean).join(" ");
  }

  // Build the fields of an object schema in a grid. `const` fields (discriminators) are not shown.
  objectFields(path, schema) {
    const grid = element("div", { className: "fields" });
    const children = {};
    for (const [name, property] of Object.entries(schema.properties || {})) {
      const childPath = path ? `${path}.${name}` : name;
      const built = this.field(childPath, name, property);
      children[name] = built.widget;
      if (built.element) {
        grid.append(built.element);
      }
    }
    return {
      element: grid,
      children,
      read: () => Object.fromEntries(Object.entries(children).map(([name, child]) => [name, child.read()])),
      write: (value) => {
        const given = value || {};
        for (const [name, child] of Object.entries(children)) {
          const property = schema.properties[name];
          child.write(name in given ? given[name] : this.initialValue(property));
        }
      },
    };
  }

  groupBox(path, schema, label) {
    const id = fieldId(path);
    const box = element("fieldset", { "data-field": path, id: `${id}-group` });
    box.append(element("legend", { text: label || schema.title || path }));
    if (schema.description) {
      box.append(element("p", { className: "hint group-hint" }, codeSpans(sentence(schema.description))));
    }
    box.append(errorSlot(`${id}-error`));
    return box;
  }

  objectWidget(path, schema, label) {
    const box = this.groupBox(path, schema, label);
    const fields = this.objectFields(path, schema);
    fields.write(this.objectStart(schema));
    box.append(fields.element);
    return { ...fields, element: box };
  }

  // An object that may be null: a checkbox in the legend turns it on, and off sends null.
  optionalObjectWidget(path, schema, label) {
    const { element: box, ...fields } = this.objectWidget(path, schema, label);
    const toggle = element("input", { type: "checkbox", id: `${fieldId(path)}-enabled` });
    const legend = box.querySelector(":scope > legend");
    legend.append(" ", element("label", { className: "optional", for: toggle.id }, [toggle, " set"]));
    const grid = box.querySelector(":scope > .fields");
    const setEnabled = (enabled) => {
      toggle.checked = enabled;
      grid.hidden = !enabled;
    };
    toggle.addEventListener("change", () => {
      if (toggle.checked) {
        fields.write(this.placeholderValue(schema));
      }
      setEnabled(toggle.checked);
    });
    setEnabled(false);
    return {
      ...fields,
      element: box,
      control: toggle,
      read: () => (toggle.checked ? fields.read() : null),
      write: (value) => {
        if (value !== null && value !== undefined) {
          fields.write(value);
        }
        setEnabled(value !== null && value !== undefined);
      },
    };
  }

  // A discriminated union: a selector of the variant ("family", "kind") and that variant's fields.
  unionWidget(path, schema, label) {
    const property = schema.discriminator.propertyName;
    const variants = this.variants(schema);
    const box = this.groupBox(path, { ...schema, description: undefined }, label);
    const selectorPath = path ? `${path}.${property}` : property;
    const selectorId = fieldId(selectorPath);
    const select = element("select", { id: selectorId, "aria-describedby": `${selectorId}-hint ${selectorId}-error` });
    for (const variant of variants) {
      select.append(element("option", { value: variant.tag, text: variant.tag }));
    }
    const hint = element("p", { className: "hint", id: `${selectorId}-hint` });
    const selector = element("div", { className: "field variant-selector", "data-field": selectorPath }, [
      element("label", { for: selectorId }, [capitalized(property), " ", element("code", { text: property })]),
      select,
      hint,
      errorSlot(`${selectorId}-error`),
    ]);
    const body = element("div", { className: "variant-fields" });
    box.append(selector, body);

    // The last values of every variant, so switching away and back keeps the user's edits.
    const remembered = new Map();
    let current = null;

    const show = (tag, value) => {
      const variant = variants.find((option) => option.tag === tag);
      if (!variant) {
        const tags = variants.map((option) => option.tag).join(", ");
        throw new Error(`${selectorPath} ${JSON.stringify(tag)} is invalid: use one of ${tags}`);
      }
      let start = value ?? remembered.get(tag) ?? this.variantStart(path, variant);
      if (current && value === undefined) {
        remembered.set(current.variant.tag, current.fields.read());
        // Fields that mean the same in both variants (the same schema) keep the current value.
        const previous = current.fields.read();
        start = { ...start };
        for (const [name, propertySchema] of Object.entries(variant.schema.properties || {})) {
          const before = current.variant.schema.properties?.[name];
          if (name !== property && before && sameJson(before, propertySchema)) {
            start[name] = previous[name];
          }
        }
      }
      const fields = this.objectFields(path, variant.schema);
      fields.write(start);
      body.replaceChildren(fields.element);
      select.value = tag;
      hint.replaceChildren(...codeSpans(sentence(variant.schema.description || variant.schema.title)));
      current = { variant, fields };
      box.dispatchEvent(new CustomEvent("variantchange", { bubbles: true, detail: { path, tag } }));
    };

    select.addEventListener("change", () => {
      show(select.value);
      box.dispatchEvent(new Event("input", { bubbles: true }));
    });
    show(variants[0].tag);
    return {
      element: box,
      control: select,
      get fields() {
        return current.fields;
      },
      read: () => current.fields.read(),
      write: (value) => {
        const tag = value?.[property] ?? variants[0].tag;
        if (current && current.variant.tag !== tag) {
          remembered.set(current.variant.tag, current.fields.read());
        }
        show(tag, value ?? undefined);
      },
    };
  }
}
