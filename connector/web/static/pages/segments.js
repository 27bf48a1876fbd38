// Segments: the list (members, entered and exited in the last 24 hours) and an editor for one segment.
// The editor builds the rule as groups (all / any / none of) of conditions on attributes, events and
// audiences, keeps a JSON view in step with it, and previews after each change how many users or
// accounts match and a sample of them (POST /api/segments/preview compiles the rule as saving does).

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

// --- the editor -------------------------------------------------------------------------------------

function selectOf(options, value, label, onchange) {
  const select = h("select", { "aria-label": label },
    options.map(([key, text]) => h("option", { value: key, selected: key === value }, text)));
  select.addEventListener("change", () => onchange(select.value));
  return select;
}

function input(value, label, oninput, props = {}) {
  const node = h("input", { type: "text", value: value ?? "", "aria-label": label, ...props });
  node.addEventListener("input", () => oninput(node.value));
  return node;
}

function conditionEditor(part, changed, redraw) {
  const kind = "event" in part ? "event" : "audience" in part ? "audience" : "attribute";
  const kindSelect = selectOf([["attribute", "attribute"], ["event", "event"], ["audience", "audience"]], kind,
    "Condition on", (next) => {
      for (const key of Object.keys(part)) delete part[key];
      Object.assign(part, next === "event" ? { event: "" } : next === "audience" ? { audience: "" }
        : { attribute: "", op: "eq", value: "" });
      redraw();
    });
  if (kind === "event") {
    const count = Object.entries(part.count ?? { gte: 1 })[0];
    return [kindSelect,
      input(part.event, "Event name", (value) => { part.event = value; changed(); }, { list: "known-events" }),
      selectOf(COUNT_OPS, count[0], "Count is", (op) => { part.count = { [op]: count[1] }; changed(); redraw(); }),
      input(String(count[1]), "Times", (value) => { part.count = { [count[0]]: Number(value) }; changed(); },
        { type: "number", min: "0", className: "short" }),
      h("span", {}, "times, within"),
      input(part.within_days ?? "", "Within days", (value) => {
        if (value === "") delete part.within_days; else part.within_days = Number(value);
        changed();
      }, { type: "number", min: "1", className: "short", placeholder: "any" }),
      h("span", {}, "days")];
  }
  if (kind === "audience") {
    return [kindSelect, input(part.audience, "Audience key", (value) => { part.audience = value; changed(); },
      { list: "known-audiences" })];
  }
  const value = NO_VALUE.includes(part.op) ? null
    : input(LIST_VALUE.includes(part.op) ? (part.value ?? []).map(showScalar).join(", ") : showScalar(part.value),
      "Value", (text) => {
        if (LIST_VALUE.includes(part.op)) part.value = text.split(",").map((item) => item.trim()).filter(Boolean).map(parseScalar);
        else if (NUMBER_VALUE.includes(part.op)) part.value = Number(text);
        else part.value = parseScalar(text);
        changed();
      }, { placeholder: LIST_VALUE.includes(part.op) ? "a, b, c" : "value" });
  return [kindSelect,
    input(part.attribute, "Attribute", (text) => { part.attribute = text; changed(); }, { list: "known-attributes" }),
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

function groupEditor(group, changed, redraw, remove = null) {
  const mode = selectOf([["all", "all of"], ["any", "any of"], ["none", "none of"]], group.mode, "Match",
    (next) => { group.mode = next; changed(); });
  const parts = group.parts.map((part, index) => {
    const drop = () => { group.parts.splice(index, 1); changed(); redraw(); };
    if (part.mode) return groupEditor(part, changed, redraw, drop);
    return h("li", { className: "condition row" }, conditionEditor(part, changed, redraw),
      h("button", { type: "button", className: "secondary", "aria-label": "Remove condition", onclick: drop }, "×"));
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
  const previewCount = h("p", { className: "preview-count", id: "preview-count", role: "status" });
  const previewSample = h("div", { id: "preview-sample" });
  const attributes = datalist("known-attributes", names.attributes[state.entity]);
  let timer = null;

  function changed() {
    jsonView.value = JSON.stringify(toRule(state.group), null, 2);
    clearTimeout(timer);
    timer = setTimeout(preview, PREVIEW_DELAY_MS);
  }
  function redraw() {
    builder.replaceChildren(groupEditor(state.group, changed, redraw));
  }
  async function preview() {
    try {
      const result = await api("POST", "/api/segments/preview", { entity: state.entity, rule: toRule(state.group) });
      say(error, "");
      say(previewCount, `${result.count} ${state.entity === "account" ? "accounts" : "users"} match now`);
      previewSample.replaceChildren(sampleTable(result.entity, result.sample));
    } catch (problem) {
      say(previewCount, "No preview: the rule is not complete.");
      say(error, problem.message);
      previewSample.replaceChildren();
    }
  }
  entity.addEventListener("change", () => {
    state.entity = entity.value;
    attributes.replaceChildren(...names.attributes[state.entity].map((value) => h("option", { value })));
    changed();
  });
  const applyJson = h("button", { type: "button", className: "secondary", onclick: () => {
    try {
      state.group = toGroup(JSON.parse(jsonView.value));
    } catch (problem) {
      say(error, `The rule is not valid JSON: ${problem.message}`);
      return;
    }
    redraw();
    changed();
  } }, "Apply JSON");

  async function save(event) {
    event.preventDefault();
    const body = { name: name.value.trim(), rule: toRule(state.group) };
    try {
      const saved = segment
        ? await api("PUT", `/api/segments/${segment.id}`, body)
        : await api("POST", "/api/segments", { ...body, entity: state.entity });
      say(error, "");
      say(status, `Saved: ${saved.member_count} members.`, "ok");
      if (!segment) {
        flash = status.textContent;
        location.hash = `#/segments/${saved.id}`;
      }
      await app.refreshStatus();
    } catch (problem) {
      say(error, problem.message);
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
      h("label", { htmlFor: "segment-rule" }, "Rule (JSON)"), jsonView, applyJson),
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
          `${segment.member_count} members now; last computed ${time(segment.computed_at)}.`) : null)));
  redraw();
  changed();
  say(status, flash, "ok");
  flash = "";
  return () => clearTimeout(timer);
}

export async function render(root, params, app) {
  if (!params.length) return renderList(root);
  return renderEditor(root, params[0] === "new" ? null : params[0], app);
}
