// Settings: the form is rendered from /settings.schema.json, so a new setting needs no change here.
// Lists that name something (segments, attributes, events) are picked from what the connector knows
// (GET /api/names: `settings` maps a field to its choices), and a name not seen yet can be typed.
// A list whose items may be {"from", "to"} (the schema's items offer such an object) lets each entry
// be sent under another name. The ideal customer profile (icp) and the segment events are edited in
// forms, with a JSON view of the same value. Secrets come back masked and are sent only when typed; a
// rejected save shows each error, in words, at its field and stores nothing; a saved list entry naming an
// attribute never seen shows the answer's warning at its field. Unsaved changes are reported to the shell
// (app.guard), which asks before they are left behind.

import { api, ApiError, h, say, statusLine } from "../lib.js";

const form = { fields: new Map(), loaded: {} };

// A problem found before anything is sent (text in a JSON box that is not JSON): shown as the server's are.
class FieldError extends Error {
  constructor(field, label, message) {
    super(message);
    this.problem = { field, label, message };
  }
}

function parseJson(text, field, label) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new FieldError(field, label, `must be valid JSON: ${error.message}`);
  }
}

// A description with `code` in backticks, as text nodes and <code> elements (never parsed as HTML).
export function richText(text) {
  return String(text ?? "").split(/`([^`]*)`/).map((part, index) => (index % 2 ? h("code", {}, part) : part));
}

function typesOf(property) {
  return property.anyOf ? property.anyOf.map((option) => option.type) : [property.type];
}

// The ICP and the segment events have their own forms; another object setting would be edited as JSON.
function kindOf(schema, property, name) {
  if (name in EDITORS) return "editor";
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
  const field = { kind: "list", values: [], mappings, changed: () => {} };
  const chips = h("ul", { className: "chips", "aria-label": `${title}: chosen` });
  const picker = h("select", { id: `setting-${name}`, "aria-describedby": describedBy });
  const other = h("input", { type: "text", "aria-label": `${title}: another name`, placeholder: "or type a name" });
  const add = h("button", { type: "button", className: "secondary", "aria-label": `Add to ${title}` }, "Add");

  function redraw() {
    chips.replaceChildren(...field.values.map((entry, index) => {
      const remove = h("button", { type: "button", className: "chip-remove", "aria-label": `Remove ${entryName(entry)}`,
        onclick: () => { field.values.splice(index, 1); redraw(); field.changed(); } }, "×");
      const parts = [h("span", { className: "chip-name" }, entryFrom(entry))];
      if (mappings) {
        const to = h("input", { type: "text", className: "chip-to", value: typeof entry === "string" ? "" : entry.to,
          "aria-label": `${entryFrom(entry)} sent as`, placeholder: "same name" });
        to.addEventListener("input", () => {
          const target = to.value.trim();
          field.values[index] = target ? { from: entryFrom(entry), to: target } : entryFrom(entry);
          field.changed();
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
    field.changed();
  }
  picker.addEventListener("change", () => push(picker.value));
  add.addEventListener("click", () => { push(other.value); other.value = ""; });
  other.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); add.click(); }
  });
  field.set = (values) => { field.values = [...(values ?? [])]; other.value = ""; redraw(); };
  // A name typed but not yet added counts: Save adds it.
  field.read = () => {
    const typed = other.value.trim();
    return typed && !field.values.some((entry) => entryFrom(entry) === typed) ? [...field.values, typed] : field.values;
  };
  field.control = picker;
  field.node = [chips, h("div", { className: "row" }, picker, other, add)];
  return field;
}

// --- forms for the ICP and the segment events, each with a JSON view of the same value -------------
// An editor draws a value as a form (draw) and reads it back from the form (read); the inputs carry the
// path of what they edit (data-path="segment_events.0.added"), so a refusal marks the very input.

function input(path, label, value, props = {}) {
  return h("input", { type: "text", value: value ?? "", "data-path": path, "aria-label": label, ...props });
}

function labelled(text, control, help) {
  const id = control.id || `${control.dataset.path.replaceAll(".", "-")}-input`;
  control.id = id;
  return h("div", { className: "subfield" }, h("label", { htmlFor: id }, text), control,
    help ? h("p", { className: "help" }, ...richText(help)) : null);
}

function numberOf(control) {
  return control.value.trim() === "" ? null : Number(control.value);
}

function icpEditor(schema) {
  const defs = resolve(schema, { $ref: "#/$defs/IcpSettings" }).properties;
  const ruleDefs = resolve(schema, { $ref: "#/$defs/IcpRule" }).properties;
  const node = h("div", { className: "editor" });
  let enabled, rules, goodAt, mediumAt;

  function ruleRow(entry, list) {
    const row = h("li", { className: "entry" });
    const number = () => [...list.children].indexOf(row);
    const rule = input("icp.rules.N.rule", "Rule", entry.rule === undefined ? "" : JSON.stringify(entry.rule),
      { className: "mono", placeholder: '{"attribute": "traits.industry", "op": "eq", "value": "software"}' });
    const points = input("icp.rules.N.points", "Points", entry.points, { type: "number", className: "short" });
    const remove = h("button", { type: "button", className: "secondary", onclick: () => { row.remove(); renumber(); changed(); } },
      "Remove");
    row.append(h("div", { className: "row" }, h("span", { className: "entry-name" }), rule, h("span", {}, "+"), points,
      h("span", {}, "points"), remove));
    row.renumber = () => {
      const n = number();
      row.querySelector(".entry-name").textContent = `Rule ${n + 1}`;
      rule.dataset.path = `icp.rules.${n}.rule`;
      rule.setAttribute("aria-label", `Rule ${n + 1}: ${ruleDefs.rule.description}`);
      points.dataset.path = `icp.rules.${n}.points`;
      points.setAttribute("aria-label", `Rule ${n + 1}: ${ruleDefs.points.title}`);
      remove.setAttribute("aria-label", `Remove rule ${n + 1}`);
    };
    return row;
  }
  function renumber() { for (const row of rules.children) row.renumber(); }
  let changed = () => {};

  return {
    node,
    set onchange(callback) { changed = callback; },
    draw(value) {
      enabled = h("input", { type: "checkbox", id: "setting-icp", checked: !!value, "data-path": "icp" });
      rules = h("ol", { className: "entries" });
      const body = h("div", { className: "editor-body", hidden: !value });
      for (const entry of value?.rules ?? []) rules.append(ruleRow(entry, rules));
      goodAt = input("icp.good_at", defs.good_at.title, value?.good_at, { type: "number", className: "short" });
      mediumAt = input("icp.medium_at", defs.medium_at.title, value?.medium_at, { type: "number", className: "short" });
      const add = h("button", { type: "button", className: "secondary", onclick: () => {
        rules.append(ruleRow({}, rules)); renumber(); rules.lastChild.querySelector("input").focus(); changed();
      } }, "Add a rule");
      enabled.addEventListener("change", () => { body.hidden = !enabled.checked; changed(); });
      body.append(h("h3", {}, defs.rules.title), rules, add,
        h("div", { className: "row thresholds" }, labelled(defs.good_at.title, goodAt, defs.good_at.description),
          labelled(defs.medium_at.title, mediumAt, defs.medium_at.description)));
      node.replaceChildren(h("div", { className: "row" }, enabled,
        h("label", { htmlFor: "setting-icp" }, "Score every account")), body);
      renumber();
      node.addEventListener("input", () => changed());
    },
    read() {
      if (!enabled.checked) return null;
      return {
        rules: [...rules.children].map((row, n) => {
          const [rule, points] = row.querySelectorAll("input");
          const label = `Ideal customer profile, rule ${n + 1}`;
          if (!rule.value.trim()) throw new FieldError(`icp.rules.${n}.rule`, label, "the rule must not be empty");
          return { rule: parseJson(rule.value, `icp.rules.${n}.rule`, label), points: numberOf(points) };
        }),
        good_at: numberOf(goodAt),
        medium_at: numberOf(mediumAt),
      };
    },
  };
}

const TRANSITIONS = ["added", "changed", "removed"];

function segmentEventsEditor(schema, names) {
  const defs = resolve(schema, { $ref: "#/$defs/SegmentEvents" }).properties;
  const node = h("div", { className: "editor" });
  const list = h("ol", { className: "entries" });
  const entries = [];  // per entry: read() -> its value
  let changed = () => {};

  function segmentPicker(path, chosen) {
    const groups = [["User segments", names.segments?.user ?? []], ["Account segments", names.segments?.account ?? []]];
    const known = groups.flatMap(([, segments]) => segments);
    const picker = h("select", { "data-path": path },
      h("option", { value: "" }, known.length ? "Pick a segment…" : "No segments yet: create one on the Segments page"),
      groups.filter(([, segments]) => segments.length).map(([group, segments]) =>
        h("optgroup", { label: group }, segments.map((segment) => h("option", { value: segment }, segment)))),
      chosen && !known.includes(chosen) ? h("option", { value: chosen }, `${chosen} (no such segment)`) : null);
    picker.value = chosen ?? "";
    return picker;
  }

  function entryNode(value) {
    const item = h("li", { className: "entry" });
    const heading = h("h3", {});
    const segment = segmentPicker("segment_events.N.segment", value.segment);
    const events = Object.fromEntries(TRANSITIONS.map((transition) => {
      const sent = value[transition] !== null && value[transition] !== undefined;
      const on = h("input", { type: "checkbox", checked: sent });
      const name = input(`segment_events.N.${transition}`, defs[transition].title, value[transition],
        { disabled: !sent, placeholder: "event name" });
      on.addEventListener("change", () => { name.disabled = !on.checked; if (on.checked) name.focus(); changed(); });
      return [transition, { on, name }];
    }));
    const properties = listControl(`segment-events-properties-${entries.length}`, defs.properties.title,
      names.settings?.synchronized_properties ?? [], true, "");
    properties.set(value.properties ?? []);
    properties.changed = () => changed();
    const timestamp = input("segment_events.N.timestamp", defs.timestamp.title, value.timestamp,
      { placeholder: "the time of the change" });
    const remove = h("button", { type: "button", className: "secondary" }, "Remove this entry");
    const entry = {
      read: () => ({
        segment: segment.value,
        ...Object.fromEntries(TRANSITIONS.map((transition) =>
          [transition, events[transition].on.checked ? events[transition].name.value : null])),
        properties: properties.read(),
        timestamp: timestamp.value.trim() ? timestamp.value : null,
      }),
      renumber: (n) => {
        heading.textContent = `Entry ${n + 1}`;
        for (const control of item.querySelectorAll("[data-path]")) {
          control.dataset.path = control.dataset.path.replace(/^segment_events\.[^.]+\./, `segment_events.${n}.`);
        }
        segment.setAttribute("aria-label", `Entry ${n + 1}: ${defs.segment.title}`);
        for (const transition of TRANSITIONS) {
          events[transition].on.setAttribute("aria-label", `Entry ${n + 1}: send ${defs[transition].title}`);
          events[transition].name.setAttribute("aria-label", `Entry ${n + 1}: ${defs[transition].title}`);
        }
        timestamp.setAttribute("aria-label", `Entry ${n + 1}: ${defs.timestamp.title}`);
        remove.setAttribute("aria-label", `Remove entry ${n + 1}`);
      },
    };
    remove.addEventListener("click", () => {
      entries.splice(entries.indexOf(entry), 1);
      item.remove();
      renumber();
      changed();
    });
    item.append(h("div", { className: "row" }, heading, remove),
      h("div", { className: "subfield" }, h("span", { className: "sublabel" }, defs.segment.title), segment),
      h("div", { className: "subfield" }, h("span", { className: "sublabel" }, "Events"),
        TRANSITIONS.map((transition) => h("div", { className: "row event" }, events[transition].on,
          h("span", { className: "event-when" }, defs[transition].description), events[transition].name))),
      h("div", { className: "subfield" }, h("span", { className: "sublabel" }, defs.properties.title),
        properties.node, h("p", { className: "help" }, ...richText(defs.properties.description))),
      h("div", { className: "subfield" }, h("span", { className: "sublabel" }, defs.timestamp.title), timestamp,
        h("p", { className: "help" }, ...richText(defs.timestamp.description))));
    entries.push(entry);
    return item;
  }
  function renumber() { entries.forEach((entry, n) => entry.renumber(n)); }

  return {
    node,
    set onchange(callback) { changed = callback; },
    draw(value) {
      entries.length = 0;
      list.replaceChildren(...(value ?? []).map(entryNode));
      renumber();
      const add = h("button", { type: "button", className: "secondary", id: "setting-segment_events", onclick: () => {
        list.append(entryNode({ added: "" }));
        renumber();
        list.lastChild.querySelector("select").focus();
        changed();
      } }, "Add a segment event");
      node.replaceChildren(list, add);
      node.addEventListener("input", () => changed());
      node.addEventListener("change", () => changed());
    },
    read: () => entries.map((entry) => entry.read()),
  };
}

const EDITORS = { icp: icpEditor, segment_events: segmentEventsEditor };

// An editor's form and a JSON view of the same value; a switch carries the value across. JSON that does
// not parse stays in its box, reported in words.
function editorControl(name, title, editor, describedBy) {
  const json = h("textarea", { id: `setting-${name}-json`, rows: 10, className: "mono", hidden: true,
    "aria-label": `${title} as JSON`, "aria-describedby": describedBy, "data-path": name });
  const toggle = h("button", { type: "button", className: "secondary view-toggle", "aria-pressed": "false" },
    "Edit as JSON");
  const field = { kind: "editor", control: toggle, changed: () => {}, report: () => {} };
  editor.onchange = () => field.changed();
  json.addEventListener("input", () => field.changed());
  const showingJson = () => !json.hidden;
  const readJson = () => (json.value.trim() ? parseJson(json.value, name, title) : null);
  function show(asJson) {
    json.hidden = !asJson;
    editor.node.hidden = asJson;
    toggle.textContent = asJson ? "Edit as a form" : "Edit as JSON";
    toggle.setAttribute("aria-pressed", String(asJson));
  }
  toggle.addEventListener("click", () => {
    try {
      if (showingJson()) editor.draw(readJson());
      else json.value = JSON.stringify(editor.read(), null, 2);
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      field.report([error.problem]);
      return;
    }
    field.report([]);
    show(!showingJson());
  });
  field.set = (value) => {
    editor.draw(value);
    json.value = JSON.stringify(value, null, 2);
  };
  field.read = () => {
    const value = showingJson() ? readJson() : editor.read();
    return name === "segment_events" ? value ?? [] : value;
  };
  field.node = [h("div", { className: "row view" }, toggle), editor.node, json];
  return field;
}

// --- the form ------------------------------------------------------------------------------------

function renderField(schema, name, property, names) {
  const choices = names.settings?.[name];
  const id = `setting-${name}`;
  const kind = kindOf(schema, property, name);
  const title = property.title ?? name;
  const describedBy = `${id}-help ${id}-error`;
  const label = h("label", { htmlFor: id }, title);
  const help = h("p", { className: "help", id: `${id}-help` }, ...richText(property.description),
    h("span", { className: "default" }, ` Default: ${describeDefault(property.default)}.`));
  const error = h("p", { className: "error", id: `${id}-error` });
  const warning = h("p", { className: "warning", id: `${id}-warning`, role: "status" });
  let field;
  if (kind === "boolean") {
    const control = h("input", { type: "checkbox", id, name, "aria-describedby": describedBy });
    field = { kind, control, set: (value) => { control.checked = !!value; }, read: () => control.checked };
    field.node = h("div", { className: "field checkbox" }, h("div", { className: "row" }, control, label), help, error);
  } else if (kind === "list") {
    field = listControl(name, title, choices ?? [], takesMappings(schema, property), describedBy);
    field.node = h("div", { className: "field list", "data-field": name }, label, field.node, help, error, warning);
  } else if (kind === "editor") {
    field = editorControl(name, title, EDITORS[name](schema, names), describedBy);
    field.node = h("div", { className: "field editor-field", "data-field": name },
      h("span", { className: "field-title", id: `${id}-title` }, title), help, field.node, error);
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
        return parseJson(control.value, name, title);
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
  field.warning = warning;
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
      const field = renderField(schema, name, property, names);
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

// What differs from the settings in force, and the problems found reading the form (JSON that does not parse).
function changes() {
  const changed = {};
  const problems = [];
  for (const [name, field] of form.fields) {
    let value;
    try {
      value = field.read();
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      problems.push(error.problem);
      continue;
    }
    // Secrets come back masked: they are sent only when the user typed a new one (or cleared it).
    if (JSON.stringify(value) !== JSON.stringify(form.loaded[name] ?? null)) changed[name] = value;
  }
  return { changed, problems };
}

function unsaved() {
  const { changed, problems } = changes();
  return problems.length > 0 || Object.keys(changed).length > 0;
}

const sentence = ({ label, message }) => `${label}: ${message}`;

// Each problem at its field, the input its path names marked; the first one gets the focus.
function showErrors(errors) {
  for (const field of form.fields.values()) {
    for (const node of [field.control, ...field.error.parentNode.querySelectorAll("[aria-invalid]")]) {
      node.removeAttribute("aria-invalid");
    }
    field.error.replaceChildren();
  }
  let first = null;
  for (const problem of errors) {
    const path = String(problem.field);
    const field = form.fields.get(path.split(".")[0]);
    if (!field) continue;
    // The input of the longest path the problem's path starts with (icp.rules.0.rule for icp.rules.0.rule.op).
    const inputs = [...field.error.parentNode.querySelectorAll("[data-path]")].filter((node) => !node.closest("[hidden]")
      && (path === node.dataset.path || path.startsWith(`${node.dataset.path}.`)));
    const target = inputs.sort((a, b) => b.dataset.path.length - a.dataset.path.length)[0] ?? field.control;
    target.setAttribute("aria-invalid", "true");
    field.error.append(h("span", { className: "problem" }, sentence({ label: problem.label ?? field.title, ...problem })));
    first ??= target;
  }
  first?.focus();
}

// Warnings name an entry (`synchronized_properties[5].from`): each shows at its list, one line per entry.
function showWarnings(warnings) {
  const byField = new Map();
  for (const { field: path, message } of warnings) {
    const name = String(path).split(/[.[]/)[0];
    byField.set(name, [...(byField.get(name) ?? []), message]);
  }
  for (const [name, field] of form.fields) {
    field.warning?.replaceChildren(...(byField.get(name) ?? []).map((message) => h("span", {}, message)));
  }
}

// What a save's first sync queued, in words ("" when nothing).
function queuedText({ users, accounts }) {
  const counted = (n, one) => `${n} ${one}${n === 1 ? "" : "s"}`;
  const parts = [users ? counted(users, "user") : "", accounts ? counted(accounts, "account") : ""].filter(Boolean);
  return parts.length ? ` ${parts.join(" and ")} queued to be sent now: follow it on the Overview.` : "";
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
  for (const field of form.fields.values()) field.report = showErrors;
  fill(settings);
  say(status, version ? `Version ${version} in force.` : "Version 0 in force: the defaults, nothing saved yet.");
  app.guard(unsaved);

  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    showErrors([]);
    showWarnings([]);
    const { changed, problems } = changes();
    if (problems.length) {
      showErrors(problems);
      say(status, `Not saved: ${sentence(problems[0])}`, "error");
      return;
    }
    if (!Object.keys(changed).length) {
      say(status, "Nothing changed.");
      return;
    }
    try {
      const saved = await api("PUT", "/api/settings", changed);
      fill(saved.settings);
      showWarnings(saved.warnings ?? []);
      say(status, `Saved: version ${saved.version} is in force.${queuedText(saved.queued)}`, "ok");
      await app.refreshStatus();
    } catch (error) {
      const errors = error.body?.errors ?? [];
      showErrors(errors);
      say(status, `Not saved: ${errors.length ? sentence(errors[0]) : error.message}`, "error");
    }
  });
}
