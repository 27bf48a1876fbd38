// Settings: the form is rendered from /settings.schema.json, so a new setting needs no change here.
// Lists that name something (segments, attributes, events) are picked from what the connector knows
// (GET /api/names: `settings` maps a field to its choices), and a name not seen yet can be typed.
// A list whose items may be {"from", "to"} (the schema's items offer such an object) lets each entry
// be sent under another name. Secrets come back masked and are sent only when typed; a rejected
// save shows each error at its field and stores nothing.

import { api, ApiError, h, say, statusLine } from "../lib.js";

const form = { fields: new Map(), loaded: {} };

function typesOf(property) {
  return property.anyOf ? property.anyOf.map((option) => option.type) : [property.type];
}

// An object setting (icp) and a list of objects other than mappings (segment_events) are edited as JSON.
function kindOf(schema, property) {
  const types = typesOf(property);
  if ((property.anyOf ?? [property]).some((option) => option.$ref || option.type === "object")) return "json";
  if (types.includes("boolean")) return "boolean";
  if (types.includes("array")) return resolve(schema, listOf(property).items)?.type === "object" ? "json" : "list";
  if (types.includes("integer") || types.includes("number")) return "number";
  return "text";
}

function resolve(schema, node) {
  const ref = node?.$ref;
  return ref ? ref.replace(/^#\//, "").split("/").reduce((found, key) => found?.[key], schema) : node;
}

function listOf(property) {
  return (property.anyOf ?? [property]).find((option) => option.type === "array") ?? property;
}

// Whether a list's items may be a mapping {"from", "to"}: an item option that is an object with both.
function takesMappings(schema, property) {
  const items = resolve(schema, listOf(property).items) ?? {};
  return (items.anyOf ?? items.oneOf ?? [items]).some((option) => {
    const properties = resolve(schema, option)?.properties ?? {};
    return "from" in properties && "to" in properties;
  });
}

function describeDefault(value) {
  if (value === true) return "on";
  if (value === false) return "off";
  if (value === null || value === undefined || (Array.isArray(value) && value.length === 0)) return "none";
  return Array.isArray(value) ? value.map(entryName).join(", ") : String(value);
}

const entryName = (entry) => (typeof entry === "string" ? entry : `${entry.from} → ${entry.to}`);
const entryFrom = (entry) => (typeof entry === "string" ? entry : entry.from);

// --- a list: chips, a picker of known names, a text box for others -------------------------

function listControl(name, title, choices, mappings, describedBy) {
  const field = { kind: "list", values: [], mappings };
  const chips = h("ul", { className: "chips", "aria-label": `${title}: chosen` });
  const picker = h("select", { id: `setting-${name}`, "aria-describedby": describedBy });
  const other = h("input", { type: "text", "aria-label": `${title}: another name`, placeholder: "or type a name" });
  const add = h("button", { type: "button", className: "secondary", "aria-label": `Add to ${title}` }, "Add");

  function redraw() {
    chips.replaceChildren(...field.values.map((entry, index) => {
      const remove = h("button", { type: "button", className: "chip-remove", "aria-label": `Remove ${entryName(entry)}`,
        onclick: () => { field.values.splice(index, 1); redraw(); } }, "×");
      const parts = [h("span", { className: "chip-name" }, entryFrom(entry))];
      if (mappings) {
        const to = h("input", { type: "text", className: "chip-to", value: typeof entry === "string" ? "" : entry.to,
          "aria-label": `${entryFrom(entry)} sent as`, placeholder: "same name" });
        to.addEventListener("input", () => {
          const target = to.value.trim();
          field.values[index] = target ? { from: entryFrom(entry), to: target } : entryFrom(entry);
        });
        parts.push(h("span", { className: "chip-arrow", "aria-hidden": "true" }, "→"), to);
      }
      return h("li", { "data-name": entryFrom(entry) }, ...parts, remove);
    }));
    const chosen = new Set(field.values.map(entryFrom));
    picker.replaceChildren(h("option", { value: "" }, choices.length ? "Pick a known name…" : "No names seen yet"),
      ...choices.filter((choice) => !chosen.has(choice)).map((choice) => h("option", { value: choice }, choice)));
  }
  function push(text) {
    const value = text.trim();
    if (value && !field.values.some((entry) => entryFrom(entry) === value)) field.values.push(value);
    redraw();
  }
  picker.addEventListener("change", () => push(picker.value));
  add.addEventListener("click", () => { push(other.value); other.value = ""; });
  other.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); add.click(); }
  });
  field.set = (values) => { field.values = [...(values ?? [])]; redraw(); };
  field.read = () => { if (other.value.trim()) add.click(); return field.values; };
  field.control = picker;
  field.node = [chips, h("div", { className: "row" }, picker, other, add)];
  return field;
}

// --- the form ------------------------------------------------------------------------------------

function renderField(schema, name, property, choices) {
  const id = `setting-${name}`;
  const kind = kindOf(schema, property);
  const title = property.title ?? name;
  const describedBy = `${id}-help ${id}-error`;
  const label = h("label", { htmlFor: id }, title);
  const help = h("p", { className: "help", id: `${id}-help` }, property.description ?? "",
    h("span", { className: "default" }, ` Default: ${describeDefault(property.default)}.`));
  const error = h("p", { className: "error", id: `${id}-error` });
  let field;
  if (kind === "boolean") {
    const control = h("input", { type: "checkbox", id, name, "aria-describedby": describedBy });
    field = { kind, control, set: (value) => { control.checked = !!value; }, read: () => control.checked };
    field.node = h("div", { className: "field checkbox" }, h("div", { className: "row" }, control, label), help, error);
  } else if (kind === "list") {
    field = listControl(name, title, choices ?? [], takesMappings(schema, property), describedBy);
    field.node = h("div", { className: "field list", "data-field": name }, label, field.node, help, error);
  } else if (kind === "json") {
    const nullable = typesOf(property).includes("null");
    const control = h("textarea", { id, name, rows: 6, "aria-describedby": describedBy,
      placeholder: "JSON, or empty for none" });
    field = {
      kind, control,
      set: (value) => {
        const empty = value === null || value === undefined || (Array.isArray(value) && value.length === 0);
        control.value = empty ? "" : JSON.stringify(value, null, 2);
      },
      read: () => {
        if (!control.value.trim()) return nullable ? null : [];
        try {
          return JSON.parse(control.value);
        } catch {
          return control.value;  // not JSON: the server refuses it, naming the field
        }
      },
    };
    field.node = h("div", { className: "field json" }, label, control, help, error);
  } else {
    const nullable = typesOf(property).includes("null");
    const control = property.secret
      ? h("input", { type: "password", id, name, autocomplete: "new-password", "aria-describedby": describedBy,
        placeholder: "not set" })
      : h("input", { type: kind === "number" ? "number" : "text", id, name, "aria-describedby": describedBy });
    field = {
      kind, control,
      set: (value) => { control.value = value ?? ""; },
      read: () => {
        if (control.value === "") return nullable ? null : "";
        return kind === "number" ? Number(control.value) : control.value;
      },
    };
    field.node = h("div", { className: "field" }, label, control, help, error);
  }
  field.title = title;
  field.error = error;
  return field;
}

function renderForm(schema, names) {
  const bySection = new Map((schema["x-sections"] ?? []).map((section) => [section, []]));
  for (const [name, property] of Object.entries(schema.properties)) {
    const section = property.section ?? "Other";
    if (!bySection.has(section)) bySection.set(section, []);
    bySection.get(section).push([name, property]);
  }
  form.fields.clear();
  const fieldsets = [];
  for (const [section, properties] of bySection) {
    if (!properties.length) continue;
    const nodes = properties.map(([name, property]) => {
      const field = renderField(schema, name, property, names.settings?.[name]);
      form.fields.set(name, field);
      return field.node;
    });
    fieldsets.push(h("fieldset", { className: "section", "data-section": section }, h("legend", {}, section), nodes));
  }
  return fieldsets;
}

function fill(settings) {
  form.loaded = settings;
  for (const [name, field] of form.fields) field.set(settings[name]);
}

function changes() {
  const changed = {};
  for (const [name, field] of form.fields) {
    const value = field.read();
    // Secrets come back masked: they are sent only when the user typed a new one (or cleared it).
    if (JSON.stringify(value) !== JSON.stringify(form.loaded[name] ?? null)) changed[name] = value;
  }
  return changed;
}

function showErrors(errors) {
  for (const field of form.fields.values()) {
    field.control.removeAttribute("aria-invalid");
    field.error.textContent = "";
  }
  let first = null;
  for (const { field: path, message } of errors) {
    const field = form.fields.get(String(path).split(".")[0]);
    if (!field) continue;
    field.control.setAttribute("aria-invalid", "true");
    field.error.textContent = `${field.title}: ${message}`;
    first ??= field.control;
  }
  first?.focus();
}

export async function render(root, _params, app) {
  const status = statusLine("settings-status");
  const fields = h("div", { id: "settings-fields" });
  const element = h("form", { id: "settings-form", noValidate: true }, fields,
    h("div", { className: "actions" }, h("button", { type: "submit" }, "Save settings"), status));
  root.append(h("div", { className: "page-head" }, h("h2", {}, "Settings")), h("section", { className: "card" }, element));

  const schemaResponse = await fetch("/settings.schema.json");
  if (!schemaResponse.ok) throw new ApiError(schemaResponse.status, null);
  const [schema, names, { version, settings }] = await Promise.all([
    schemaResponse.json(), api("GET", "/api/names"), api("GET", "/api/settings")]);
  fields.replaceChildren(...renderForm(schema, names));
  fill(settings);
  say(status, version ? `Version ${version} in force.` : "Version 0 in force: the defaults, nothing saved yet.");

  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    showErrors([]);
    const changed = changes();
    if (!Object.keys(changed).length) {
      say(status, "Nothing changed.");
      return;
    }
    try {
      const saved = await api("PUT", "/api/settings", changed);
      fill(saved.settings);
      const queued = saved.queued.users + saved.queued.accounts;
      say(status, `Saved: version ${saved.version} is in force.` + (queued ? ` ${saved.queued.users} users`
        + (saved.queued.accounts ? ` and ${saved.queued.accounts} accounts` : "")
        + " queued to be sent now: follow it on the Overview." : ""), "ok");
      await app.refreshStatus();
    } catch (error) {
      showErrors(error.body?.errors ?? []);
      say(status, `Not saved: ${error.message}`, "error");
    }
  });
}
