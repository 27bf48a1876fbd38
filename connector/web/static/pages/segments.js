// Segments: the list (members, entered and exited in the last 24 hours) and an editor for one segment.
// The editor builds the rule as groups (all / any / none of) of conditions on attributes, events and
// audiences. The builder and the JSON view are one state: editing either redraws the other (an operator
// typed in the JSON shows in the builder, marked when it is none). An attribute, event or audience the
// connector has never seen (GET /api/names) is marked as it is typed, with the closest names seen; a
// trait typed by its short name (`plan`) is read as `traits.plan`, the one spelling every screen shows.
// After each change it previews how many users or accounts match and a sample of them
// (POST /api/segments/preview compiles the rule as saving does); a rule's errors name the condition.

import { api, card, datalist, h, link, say, statusLine, table, time } from "../lib.js";

const OPERATORS = [
  ["eq", "is"], ["neq", "is not"], ["in", "is one of"], ["not_in", "is none of"], ["contains", "contains"],
  ["starts_with", "starts with"], ["ends_with", "ends with"], ["exists", "exists"], ["not_exists", "does not exist"],
  ["gt", ">"], ["gte", "≥"], ["lt", "<"], ["lte", "≤"], ["before", "before"], ["after", "after"],
  ["within_last_days", "within the last N days"],
];
const NO_VALUE = ["exists", "not_exists"];
const LIST_VALUE = ["in", "not_in"];
const NUMBER_VALUE = ["gt", "gte", "lt", "lte", "within_last_days"];
const COUNT_OPS = [["gte", "at least"], ["eq", "exactly"], ["lte", "at most"], ["gt", "more than"], ["lt", "fewer than"]];
const PREVIEW_DELAY_MS = 300;
const SUGGESTIONS = 3;
let flash = ""; // what the editor of a segment just created says once it opens on the new segment's URL

// --- the list ------------------------------------------------------------------------------------

async function renderList(root) {
  const { segments } = await api("GET", "/api/segments");
  root.append(
    h("div", { className: "page-head" }, h("h2", {}, "Segments"), link("#/segments/new", "New segment")),
    card("All segments", table(["Name", "Of", "Members", "Entered (24 h)", "Exited (24 h)", "Rule"],
      segments.map((segment) => h("tr", { "data-segment": segment.name },
        h("td", {}, link(`#/segments/${segment.id}`, segment.name)),
        h("td", {}, segment.entity === "account" ? "accounts" : "users"),
        h("td", { className: "number members" }, String(segment.member_count)),
        h("td", { className: "number" }, String(segment.entered_24h)),
        h("td", { className: "number" }, String(segment.exited_24h)),
        h("td", {}, segment.time_based ? "time-based (re-evaluated on a schedule)" : "on change"))),
      "No segments yet: create one to send its members to Segment.")));
}

// --- rule <-> editor model ----------------------------------------------------------------------
// The editor's model is a group {mode: all|any|none, parts: [condition or group]}; none is {"not": {"any"}}.

function toGroup(rule) {
  if (rule?.all) return { mode: "all", parts: rule.all.map(toPart) };
  if (rule?.any) return { mode: "any", parts: rule.any.map(toPart) };
  if (rule?.not) return { mode: "none", parts: rule.not.any ? rule.not.any.map(toPart) : [toPart(rule.not)] };
  return { mode: "all", parts: rule ? [toPart(rule)] : [] };
}

function toPart(rule) {
  return rule.all || rule.any || rule.not ? toGroup(rule) : { ...rule };
}

function toRule(group) {
  const parts = group.parts.map((part) => (part.mode ? toRule(part) : part));
  if (group.mode === "none") return { not: { any: parts } };
  return { [group.mode]: parts };
}

// "100" -> 100, "true" -> true, '"100"' -> "100", anything else the text itself.
function parseScalar(text) {
  try {
    const value = JSON.parse(text);
    if (["number", "boolean", "string"].includes(typeof value)) return value;
  } catch { /* text */ }
  return text;
}

const showScalar = (value) => (typeof value === "string" && parseScalar(value) !== value ? JSON.stringify(value)
  : String(value ?? ""));

const plural = (count, one, many) => `${count} ${count === 1 ? one : many}`;

// --- names seen: marks and "did you mean" ----------------------------------------------------------

// Edit distance where swapping two neighbours counts once ("paln" is one step from "plan").
function distance(a, b) {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j += 1) rows[0][j] = j;
  for (let i = 1; i <= a.length; i += 1) {
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      rows[i][j] = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        rows[i][j] = Math.min(rows[i][j], rows[i - 2][j - 2] + 1);
      }
    }
  }
  return rows[a.length][b.length];
}

const likeness = (a, b) => 1 - distance(a.toLowerCase(), b.toLowerCase()) / Math.max(a.length, b.length, 1);

// The names seen most like `typed`, compared whole and by their last part (`plan` is like `traits.plan`):
// the best and those nearly as close, never one far off.
function closest(typed, seen) {
  const scored = seen.map((name) => [Math.max(likeness(typed, name), likeness(typed, name.split(".").pop())), name])
    .sort((x, y) => y[0] - x[0] || x[1].localeCompare(y[1]));
  const best = scored[0]?.[0] ?? 0;
  return scored.slice(0, SUGGESTIONS).filter(([score]) => score >= Math.max(0.6, best - 0.1)).map(([, name]) => name);
}

// Whether an attribute names something seen: a name of the list, or a path inside one (traits.address.city).
const attributeSeen = (name, seen) => seen.some((known) => name === known || name.startsWith(`${known}.`));

// The one spelling of a trait: `plan` typed where `traits.plan` is an attribute seen is read as the latter.
function spelled(name, seen) {
  return !attributeSeen(name, seen) && seen.includes(`traits.${name}`) ? `traits.${name}` : name;
}

// A note under a condition: nothing while the name is seen (or empty), else "never seen" and the closest.
function unseenNote(note, typed, seen, what, replace) {
  if (!typed || (what === "attribute" ? attributeSeen(typed, seen) : seen.includes(typed))) {
    note.replaceChildren();
    return;
  }
  const close = closest(typed, seen);
  note.replaceChildren(h("span", {}, `Never seen: no ${what} named “${typed}” has arrived yet.`),
    ...(close.length ? [h("span", {}, " Did you mean "), ...close.flatMap((name, index) => [
      index ? h("span", {}, " or ") : null,
      h("button", { type: "button", className: "link", onclick: () => replace(name) }, name)]).filter(Boolean),
    h("span", {}, "?")] : []));
}

// --- rule errors in people's words -------------------------------------------------------------------

const FIELD_WORDS = { op: "operator", attribute: "attribute", value: "value", event: "event name", count: "times",
  within_days: "days", audience: "audience" };

// `rule.all[1].any[0].op` -> "Condition 2.1: choose an operator", the numbers the builder shows.
function ruleProblem(path, message) {
  const numbers = [...String(path).matchAll(/\[(\d+)\]/g)].map((match) => Number(match[1]) + 1);
  const key = String(path).split(".").pop().replace(/\[\d+\]$/, "");
  const where = `Condition ${numbers.length ? numbers.join(".") : 1}`;
  if (key === "op") return `${where}: choose an operator (${message.split(";")[0]})`;
  if (key in FIELD_WORDS) return `${where}: ${FIELD_WORDS[key]}: ${message}`;
  return `${where}: ${message}`;
}

const problemText = (problem) => (String(problem.body?.field ?? "").startsWith("rule")
  ? ruleProblem(problem.body.field, problem.body.errors?.[0]?.message ?? problem.message) : problem.message);

// --- the editor -------------------------------------------------------------------------------------

// A value not among the options (an operator typed in the JSON view) shows as itself, marked, until changed.
function selectOf(options, value, label, onchange) {
  const known = options.some(([key]) => key === value);
  const shown = known || value === undefined ? options : [[value, `${value} (unknown)`], ...options];
  const select = h("select", { "aria-label": label, "aria-invalid": known ? null : "true" },
    shown.map(([key, text]) => h("option", { value: key, selected: key === value }, text)));
  select.addEventListener("change", () => onchange(select.value));
  return select;
}

function input(value, label, oninput, props = {}) {
  const node = h("input", { type: "text", value: value ?? "", "aria-label": label, ...props });
  node.addEventListener("input", () => oninput(node.value));
  return node;
}

// `ctx`: what every condition's editor shares: changed() after an edit, redraw() after a change of shape, and
// `seen()`, the names seen for the segment's entity ({attributes, events, audiences}).
function conditionEditor(part, number, ctx) {
  const { changed, redraw } = ctx;
  const kind = "event" in part ? "event" : "audience" in part ? "audience" : "attribute";
  const note = h("p", { className: "unseen", role: "status" });
  const kindSelect = selectOf([["attribute", "attribute"], ["event", "event"], ["audience", "audience"]], kind,
    "Condition on", (next) => {
      for (const key of Object.keys(part)) delete part[key];
      Object.assign(part, next === "event" ? { event: "" } : next === "audience" ? { audience: "" }
        : { attribute: "", op: "eq", value: "" });
      changed();
      redraw();
    });
  // A name box marked as it is typed when the connector never saw the name; a suggestion picked replaces it.
  function nameInput(key, label, list, what, seen, props = {}) {
    const mark = () => unseenNote(note, part[key], seen(), what, (name) => {
      part[key] = name;
      node.value = name;
      mark();
      changed();
    });
    const node = input(part[key], label, (text) => { part[key] = text; mark(); changed(); }, { list, ...props });
    if (what === "attribute") {
      node.addEventListener("change", () => {
        const one = spelled(node.value.trim(), seen());
        if (one !== node.value) { node.value = part[key] = one; mark(); changed(); }
      });
    }
    mark();
    return node;
  }
  const head = [h("span", { className: "condition-number" }, `${number}.`), kindSelect];
  let body;
  if (kind === "event") {
    const count = Object.entries(part.count ?? { gte: 1 })[0];
    body = [...head,
      nameInput("event", "Event name", "known-events", "event", () => ctx.seen().events),
      // One phrase, "at least N times, within N days": it moves to the next line whole, never in pieces.
      h("span", { className: "nowrap" },
        selectOf(COUNT_OPS, count[0], "Count is", (op) => { part.count = { [op]: count[1] }; changed(); redraw(); }),
        input(String(count[1]), "Times", (value) => { part.count = { [count[0]]: Number(value) }; changed(); },
          { type: "number", min: "0", className: "short" }),
        " times, within ",
        input(part.within_days ?? "", "Within days", (value) => {
          if (value === "") delete part.within_days; else part.within_days = Number(value);
          changed();
        }, { type: "number", min: "1", className: "short", placeholder: "any" }),
        " days")];
  } else if (kind === "audience") {
    body = [...head, nameInput("audience", "Audience key", "known-audiences", "audience", () => ctx.seen().audiences)];
  } else {
    const value = NO_VALUE.includes(part.op) ? null
      : input(LIST_VALUE.includes(part.op) ? [].concat(part.value ?? []).map(showScalar).join(", ")
        : showScalar(part.value), "Value", (text) => {
        if (LIST_VALUE.includes(part.op)) part.value = text.split(",").map((item) => item.trim()).filter(Boolean).map(parseScalar);
        else if (NUMBER_VALUE.includes(part.op)) part.value = Number(text);
        else part.value = parseScalar(text);
        changed();
      }, { placeholder: LIST_VALUE.includes(part.op) ? "a, b, c" : "value" });
    body = [...head,
      nameInput("attribute", "Attribute", "known-attributes", "attribute", () => ctx.seen().attributes),
      selectOf(OPERATORS, part.op, "Operator", (op) => {
        part.op = op;
        if (NO_VALUE.includes(op)) delete part.value;
        else if (LIST_VALUE.includes(op)) part.value = [].concat(part.value ?? []).filter((item) => item !== "");
        else if (Array.isArray(part.value)) part.value = part.value[0] ?? "";
        changed();
        redraw();
      }),
      value];
  }
  return { body, note };
}

function groupEditor(group, ctx, prefix = "", remove = null) {
  const { changed, redraw } = ctx;
  const mode = selectOf([["all", "all of"], ["any", "any of"], ["none", "none of"]], group.mode, "Match",
    (next) => { group.mode = next; changed(); });
  const parts = group.parts.map((part, index) => {
    const number = `${prefix}${index + 1}`;
    const drop = () => { group.parts.splice(index, 1); changed(); redraw(); };
    if (part.mode) return groupEditor(part, ctx, `${number}.`, drop);
    const { body, note } = conditionEditor(part, number, ctx);
    // The remove button ends the line it belongs to: it never wraps alone onto the next one.
    return h("li", { className: "condition", "data-condition": number },
      h("div", { className: "row" }, ...body.slice(0, -1),
        h("span", { className: "nowrap" }, body.at(-1),
          h("button", { type: "button", className: "secondary", "aria-label": "Remove condition", onclick: drop }, "×"))),
      note);
  });
  const add = (part) => () => { group.parts.push(part()); changed(); redraw(); };
  return h("li", { className: "group" },
    h("div", { className: "row" }, h("span", {}, "Match"), mode, h("span", {}, "these conditions"),
      remove && h("button", { type: "button", className: "secondary", onclick: remove }, "Remove group")),
    h("ul", { className: "parts" }, parts),
    h("div", { className: "row" },
      h("button", { type: "button", className: "secondary",
        onclick: add(() => ({ attribute: "", op: "eq", value: "" })) }, "Add condition"),
      h("button", { type: "button", className: "secondary", onclick: add(() => ({ mode: "any", parts: [] })) },
        "Add group")));
}

function sampleTable(entity, sample) {
  if (entity === "account") {
    return table(["Account", "Group id", "Domain", "Name"], sample.map((account) => h("tr", {},
      h("td", {}, link(`#/profiles/account/${account.id}`, `#${account.id}`)), h("td", {}, account.group_id ?? "—"),
      h("td", {}, account.domain ?? "—"), h("td", {}, account.name ?? "—"))), "No account matches.");
  }
  return table(["User", "userId", "anonymousId", "Email"], sample.map((user) => h("tr", {},
    h("td", {}, link(`#/profiles/user/${user.id}`, `#${user.id}`)), h("td", {}, user.user_id ?? "—"),
    h("td", {}, user.anonymous_id ?? "—"), h("td", {}, user.email ?? "—"))), "No user matches.");
}

async function renderEditor(root, segmentId, app) {
  const [names, segment] = await Promise.all([
    api("GET", "/api/names"), segmentId ? api("GET", `/api/segments/${segmentId}`) : null]);
  const state = {
    entity: segment?.entity ?? "user",
    group: toGroup(segment?.rule ?? { all: [{ attribute: "traits.plan", op: "eq", value: "pro" }] }),
  };
  const status = statusLine("segment-status");
  const error = h("p", { className: "error", id: "segment-error", role: "alert" });
  const name = h("input", { id: "segment-name", required: true, maxLength: 200, value: segment?.name ?? "" });
  const entity = h("select", { id: "segment-entity", disabled: !!segment },
    h("option", { value: "user", selected: state.entity === "user" }, "users"),
    h("option", { value: "account", selected: state.entity === "account" }, "accounts"));
  const builder = h("ul", { className: "rule-builder", "aria-label": "Rule" });
  const jsonView = h("textarea", { id: "segment-rule", rows: 8, className: "mono", spellcheck: false });
  const jsonError = h("p", { className: "error", id: "segment-rule-error", role: "alert" });
  const previewCount = h("p", { className: "preview-count", id: "preview-count", role: "status" });
  const previewSample = h("div", { id: "preview-sample" });
  const attributes = datalist("known-attributes", names.attributes[state.entity]);
  let timer = null;

  const ctx = {
    seen: () => ({ attributes: names.attributes[state.entity], events: names.events, audiences: names.audiences }),
    // After an edit in the builder the JSON view shows the rule; after one in the JSON view, it is left as typed.
    changed: (fromJson = false) => {
      if (!fromJson) {
        jsonView.value = JSON.stringify(toRule(state.group), null, 2);
        say(jsonError, "");
      }
      clearTimeout(timer);
      timer = setTimeout(preview, PREVIEW_DELAY_MS);
    },
    redraw: () => builder.replaceChildren(groupEditor(state.group, ctx)),
  };
  async function preview() {
    try {
      const result = await api("POST", "/api/segments/preview", { entity: state.entity, rule: toRule(state.group) });
      say(error, "");
      const [one, many] = state.entity === "account" ? ["account", "accounts"] : ["user", "users"];
      say(previewCount, `${plural(result.count, one, many)} ${result.count === 1 ? "matches" : "match"} now`);
      previewSample.replaceChildren(sampleTable(result.entity, result.sample));
    } catch (problem) {
      say(previewCount, "No preview: the rule is not complete.", "incomplete");
      say(error, problemText(problem));
      previewSample.replaceChildren();
    }
  }
  entity.addEventListener("change", () => {
    state.entity = entity.value;
    attributes.replaceChildren(...names.attributes[state.entity].map((value) => h("option", { value })));
    ctx.redraw();
    ctx.changed();
  });
  // The JSON view is the builder's other face: each edit that parses becomes the state and redraws the builder.
  jsonView.addEventListener("input", () => {
    let rule;
    try {
      rule = JSON.parse(jsonView.value);
    } catch (problem) {
      say(jsonError, `Not valid JSON yet: ${problem.message}`);
      return;
    }
    say(jsonError, "");
    state.group = toGroup(rule);
    ctx.redraw();
    ctx.changed(true);
  });

  async function save(event) {
    event.preventDefault();
    const body = { name: name.value.trim(), rule: toRule(state.group) };
    try {
      const saved = segment
        ? await api("PUT", `/api/segments/${segment.id}`, body)
        : await api("POST", "/api/segments", { ...body, entity: state.entity });
      say(error, "");
      say(status, `Saved: ${plural(saved.member_count, "member", "members")}.`, "ok");
      if (!segment) {
        flash = status.textContent;
        location.hash = `#/segments/${saved.id}`;
      }
      await app.refreshStatus();
    } catch (problem) {
      say(error, problemText(problem));
    }
  }
  async function remove() {
    if (!confirm(`Delete the segment "${segment.name}"? Its members leave it: Segment hears they are no longer in it.`)) {
      return;
    }
    try {
      await api("DELETE", `/api/segments/${segment.id}`);
      location.hash = "#/segments";
    } catch (problem) {
      say(error, problem.message);
    }
  }

  const form = h("form", { id: "segment-form", className: "stack" },
    h("label", { htmlFor: "segment-name" }, "Segment name"), name,
    h("label", { htmlFor: "segment-entity" }, "Segment of"), entity,
    h("h3", {}, "Rule"), builder,
    h("details", { className: "json-view" }, h("summary", {}, "JSON view"),
      h("label", { htmlFor: "segment-rule" }, "Rule (JSON)"), jsonView, jsonError),
    error,
    h("div", { className: "row" }, h("button", { type: "submit" }, segment ? "Save segment" : "Create segment"),
      segment && h("button", { type: "button", className: "danger", onclick: remove }, "Delete segment"), status));
  form.addEventListener("submit", save);
  root.append(
    h("div", { className: "page-head" }, h("h2", {}, segment ? `Segment: ${segment.name}` : "New segment"),
      link("#/segments", "All segments")),
    attributes, datalist("known-events", names.events), datalist("known-audiences", names.audiences),
    h("div", { className: "grid-editor" },
      h("section", { className: "card" }, form),
      card("Preview", previewCount, previewSample,
        segment ? h("p", { className: "help" },
          `${plural(segment.member_count, "member", "members")} now; last computed ${time(segment.computed_at)}.`)
          : null)));
  ctx.redraw();
  ctx.changed();
  say(status, flash, "ok");
  flash = "";
  return () => clearTimeout(timer);
}

export async function render(root, params, app) {
  if (!params.length) return renderList(root);
  return renderEditor(root, params[0] === "new" ? null : params[0], app);
}
