// The dashboard: one module, no build step. The settings form is rendered from
// /settings.schema.json so a new setting needs no change here.

const TOKEN_KEY = "connector.admin-token";
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `the server answered ${status}`);
    this.status = status;
    this.body = body ?? {};
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    // A token that stops working (a changed config var) ends the session at once.
    if (response.status === 401) signOut("Your admin token is no longer accepted.");
    throw error;
  }
  return data;
}

// Build DOM nodes without innerHTML: profile traits and dead letters are user data.
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key in node && !key.includes("-")) node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

function say(id, message, kind = "") {
  const node = $(id);
  node.textContent = message;
  node.dataset.kind = kind;
}

function unavailable(error, what) {
  return error.status === 404
    ? `${what} are not available on this server (the endpoint answered 404).`
    : `Could not load ${what.toLowerCase()}: ${error.message}`;
}

// --- sign in ---------------------------------------------------------------

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  let status;
  try {
    status = await api("GET", "/api/status");
  } catch (error) {
    signOut(error.status === 401 ? "That admin token was not accepted." : `Could not reach the connector: ${error.message}`);
    return;
  }
  $("sign-in").hidden = true;
  $("dashboard").hidden = false;
  $("sign-out").hidden = false;
  showStatus(status);
  await Promise.all([loadSettings(), loadSegments(), loadDeadLetters()]);
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  $("dashboard").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("server-meta").textContent = "";
  say("sign-in-error", message);
  $("admin-token").value = "";
  $("admin-token").setAttribute("aria-invalid", message ? "true" : "false");
  $("admin-token").focus();
}

// --- connection and journal ------------------------------------------------

let keyRevealed = false;

function showStatus(status) {
  $("server-meta").textContent = `version ${status.version} · ${status.database}`;
  $("segment-endpoint").textContent = `${location.origin}/segment`;
  $("v1-endpoint").textContent = `${location.origin}/v1`;
  showApiKey(status.api_key ?? "", false);
  const counts = Object.entries(status.journal ?? {});
  $("journal-counts").replaceChildren(
    ...counts.map(([name, count]) => h("div", {}, h("dt", {}, name), h("dd", {}, String(count)))));
  say("journal-status", counts.length ? "" : "No messages received yet.");
}

function showApiKey(value, revealed) {
  keyRevealed = revealed;
  $("api-key").value = value;
  $("reveal-api-key").textContent = revealed ? "Hide" : "Reveal";
  $("reveal-api-key").setAttribute("aria-pressed", String(revealed));
}

async function refreshStatus() {
  try {
    showStatus(await api("GET", "/api/status"));
  } catch (error) {
    say("api-key-status", `Could not load the status: ${error.message}`, "error");
  }
}

async function toggleReveal() {
  try {
    if (keyRevealed) await refreshStatus();
    else showApiKey((await api("POST", "/api/api-key/reveal")).api_key, true);
    say("api-key-status", "");
  } catch (error) {
    say("api-key-status", error.message, "error");
  }
}

async function copyKey() {
  try {
    const { api_key: key } = await api("POST", "/api/api-key/reveal");
    await navigator.clipboard.writeText(key);
    say("api-key-status", "API key copied to the clipboard.", "ok");
  } catch (error) {
    say("api-key-status", `Could not copy (${error.message}); use Reveal and copy it by hand.`, "error");
  }
}

async function rotateKey() {
  const sure = confirm("Rotate the API key? The current key stops working at once: every Segment destination "
    + "and library that uses it must be given the new one.");
  if (!sure) return;
  try {
    showApiKey((await api("POST", "/api/api-key/rotate")).api_key, true);
    say("api-key-status", "New API key in force: update the Segment destination and libraries.", "ok");
  } catch (error) {
    say("api-key-status", error.message, "error");
  }
}

// --- settings, rendered from the schema -------------------------------------

const form = { controls: new Map(), loaded: {} };

function typesOf(property) {
  return property.anyOf ? property.anyOf.map((option) => option.type) : [property.type];
}

function kindOf(property) {
  const types = typesOf(property);
  // An object setting (the `icp` scores) is edited as JSON.
  if (types.includes("object") || (property.anyOf ?? [property]).some((option) => option.$ref)) return "json";
  if (types.includes("boolean")) return "boolean";
  // A list of objects (segment_events) is edited as JSON; names and mappings as a comma-separated list.
  if (types.includes("array")) return property.items?.$ref ? "json" : "list";
  if (types.includes("integer") || types.includes("number")) return "number";
  return "text";
}

function describeDefault(value) {
  if (value === true) return "on";
  if (value === false) return "off";
  if (value === null || value === undefined || (Array.isArray(value) && value.length === 0)) return "none";
  return Array.isArray(value) ? value.map(showEntry).join(", ") : String(value);
}

// A mapping {"from": a, "to": b} is written `a -> b` in a list of names.
const MAPS_TO = " -> ";

function showEntry(entry) {
  return typeof entry === "string" ? entry : `${entry.from}${MAPS_TO}${entry.to}`;
}

function parseList(text) {
  return text.split(",").map((item) => item.trim()).filter(Boolean).map((item) => {
    const [from, to] = item.split(MAPS_TO.trim()).map((part) => part.trim());
    return to === undefined ? item : { from, to };
  });
}

function showJson(value) {
  const empty = value == null || (Array.isArray(value) && !value.length);
  return empty ? "" : JSON.stringify(value, null, 2);
}

function renderChips(list, values) {
  list.replaceChildren(...values.map((value) => h("li", {}, value)));
}

function renderField(name, property) {
  const id = `setting-${name}`;
  const kind = kindOf(property);
  const describedBy = `${id}-help ${id}-error`;
  const label = h("label", { htmlFor: id }, property.title ?? name);
  const help = h("p", { className: "help", id: `${id}-help` }, property.description ?? "",
    h("span", { className: "default" }, ` Default: ${describeDefault(property.default)}.`));
  const error = h("p", { className: "error", id: `${id}-error` });
  let control;
  let chips = null;
  if (kind === "boolean") {
    control = h("input", { type: "checkbox", id, name, "aria-describedby": describedBy });
    return { control, kind, node: h("div", { className: "field checkbox" }, h("div", { className: "row" }, control, label), help, error) };
  }
  if (kind === "list") {
    control = h("input", { type: "text", id, name, "aria-describedby": describedBy, placeholder: "comma, separated, names" });
    chips = h("ul", { className: "chips", "aria-hidden": "true" });
    control.addEventListener("input", () => renderChips(chips, parseList(control.value).map(showEntry)));
    help.prepend(property.items?.anyOf ? "Comma-separated; `attribute -> name` sends it under that name. "
      : "Comma-separated. ");
  } else if (kind === "json") {
    control = h("textarea", { id, name, rows: 6, "aria-describedby": describedBy, placeholder: "JSON, or empty for none" });
    help.prepend("JSON. ");
  } else if (property.secret) {
    control = h("input", { type: "password", id, name, autocomplete: "new-password", "aria-describedby": describedBy,
                           placeholder: "not set" });
  } else {
    control = h("input", { type: kind === "number" ? "number" : "text", id, name, "aria-describedby": describedBy });
  }
  const node = h("div", { className: "field" }, label, control, chips, help, error);
  return { control, kind, chips, node, nullable: typesOf(property).includes("null") };
}

function renderSettingsForm(schema) {
  const bySection = new Map((schema["x-sections"] ?? []).map((section) => [section, []]));
  for (const [name, property] of Object.entries(schema.properties)) {
    const section = property.section ?? "Other";
    if (!bySection.has(section)) bySection.set(section, []);
    bySection.get(section).push([name, property]);
  }
  form.controls.clear();
  const fieldsets = [];
  for (const [section, properties] of bySection) {
    if (!properties.length) continue;
    const fields = properties.map(([name, property]) => {
      const field = renderField(name, property);
      form.controls.set(name, field);
      return field.node;
    });
    fieldsets.push(h("fieldset", { className: "section", "data-section": section }, h("legend", {}, section), fields));
  }
  $("settings-fields").replaceChildren(...fieldsets);
}

function fillSettings(settings) {
  form.loaded = settings;
  for (const [name, field] of form.controls) {
    const value = settings[name];
    if (field.kind === "boolean") field.control.checked = !!value;
    else if (field.kind === "list") {
      field.control.value = (value ?? []).map(showEntry).join(", ");
      renderChips(field.chips, (value ?? []).map(showEntry));
    } else if (field.kind === "json") field.control.value = showJson(value);
    else field.control.value = value ?? "";
  }
}

function readControl(field) {
  const { control, kind } = field;
  if (kind === "boolean") return control.checked;
  if (kind === "list") return parseList(control.value);
  if (kind === "json") {
    if (!control.value.trim()) return field.nullable ? null : [];
    try {
      return JSON.parse(control.value);
    } catch {
      return control.value;  // not JSON: the server refuses it, naming the field
    }
  }
  if (control.value === "") return field.nullable ? null : "";
  return kind === "number" ? Number(control.value) : control.value;
}

function changedSettings() {
  const changes = {};
  for (const [name, field] of form.controls) {
    const value = readControl(field);
    // Secrets come back masked: they are sent only when the user typed a new one (or cleared it).
    if (JSON.stringify(value) !== JSON.stringify(form.loaded[name] ?? null)) changes[name] = value;
  }
  return changes;
}

function clearFieldErrors() {
  for (const [name, field] of form.controls) {
    field.control.removeAttribute("aria-invalid");
    $(`setting-${name}-error`).textContent = "";
  }
}

function showFieldErrors(errors) {
  let first = null;
  for (const { field: path, message } of errors) {
    const name = String(path).split(".")[0];
    const field = form.controls.get(name);
    if (!field) continue;
    field.control.setAttribute("aria-invalid", "true");
    $(`setting-${name}-error`).textContent = `${field.control.labels[0].textContent}: ${message}`;
    first ??= field.control;
  }
  first?.focus();
}

async function loadSettings() {
  try {
    const schemaResponse = await fetch("/settings.schema.json");
    if (!schemaResponse.ok) throw new ApiError(schemaResponse.status, null);
    renderSettingsForm(await schemaResponse.json());
    const { version, settings } = await api("GET", "/api/settings");
    fillSettings(settings);
    say("settings-status", version ? `Version ${version} in force.` : "Version 0 in force: the defaults, nothing saved yet.");
  } catch (error) {
    say("settings-status", `Could not load the settings: ${error.message}`, "error");
  }
}

async function saveSettings(event) {
  event.preventDefault();
  clearFieldErrors();
  const changes = changedSettings();
  if (!Object.keys(changes).length) {
    say("settings-status", "Nothing changed.");
    return;
  }
  try {
    const { version, settings } = await api("PUT", "/api/settings", changes);
    fillSettings(settings);
    say("settings-status", `Saved: version ${version} is in force.`, "ok");
  } catch (error) {
    showFieldErrors(error.body.errors ?? []);
    say("settings-status", `Not saved: ${error.message}`, "error");
  }
}

// --- segments ------------------------------------------------------------------

function listOf(data, key) {
  return Array.isArray(data) ? data : (data?.[key] ?? []);
}

async function loadSegments() {
  const table = $("segments-table");
  try {
    const segments = listOf(await api("GET", "/api/segments"), "segments");
    table.tBodies[0].replaceChildren(...segments.map((segment) => h("tr", {},
      h("td", {}, segment.name), h("td", {}, segment.entity === "account" ? "accounts" : "users"),
      h("td", { className: "number" }, String(segment.member_count ?? "…")))));
    table.hidden = !segments.length;
    say("segments-status", segments.length ? "" : "No segments yet.");
  } catch (error) {
    table.hidden = true;
    say("segments-status", unavailable(error, "Segments"), "error");
  }
}

async function createSegment(event) {
  event.preventDefault();
  const data = new FormData(event.target);
  let rule;
  try {
    rule = JSON.parse(data.get("rule"));
  } catch (problem) {
    say("segment-error", `The rule is not valid JSON: ${problem.message}`);
    return;
  }
  try {
    await api("POST", "/api/segments", { name: data.get("name").trim(), entity: data.get("entity"), rule });
    say("segment-error", "");
    $("segment-name").value = "";
    await loadSegments();
  } catch (error) {
    say("segment-error", error.status === 404 ? unavailable(error, "Segments") : error.message);
  }
}

// --- dead letters -------------------------------------------------------------

function describeMessage(message) {
  const who = message?.userId ?? message?.anonymousId ?? message?.groupId ?? "";
  return [message?.type, message?.event, who].filter(Boolean).join(" · ") || "(message)";
}

async function loadDeadLetters() {
  const table = $("dead-letters-table");
  try {
    const letters = listOf(await api("GET", "/api/dead-letters"), "dead_letters");
    table.tBodies[0].replaceChildren(...letters.map((letter) => h("tr", {},
      h("td", {}, letter.created_at ? new Date(letter.created_at).toLocaleString() : ""),
      h("td", { className: "mono" }, describeMessage(letter.message)),
      h("td", {}, letter.reason ?? ""),
      h("td", { className: "number" }, letter.status_code ? String(letter.status_code) : "—"),
      h("td", {}, letter.replayed_at
        ? "replayed"
        : h("button", { type: "button", className: "secondary", "aria-label": `Replay dead letter ${letter.id}`,
                        onclick: () => replay([letter.id]) }, "Replay")))));
    table.hidden = !letters.length;
    $("replay-all").hidden = !letters.some((letter) => !letter.replayed_at);
    say("dead-letters-status", letters.length ? "" : "No dead letters: every message was delivered or is on its way.");
  } catch (error) {
    table.hidden = true;
    $("replay-all").hidden = true;
    say("dead-letters-status", unavailable(error, "Dead letters"), "error");
  }
}

async function replay(ids) {
  try {
    const { replayed = 0, failed = 0 } = await api("POST", "/api/dead-letters/replay", ids ? { ids } : {});
    await loadDeadLetters();
    say("dead-letters-status", `Replayed ${replayed}` + (failed ? `; ${failed} failed again and stay listed.` : "."),
        failed ? "error" : "ok");
  } catch (error) {
    say("dead-letters-status", `Replay failed: ${error.message}`, "error");
  }
}

// --- user lookup ---------------------------------------------------------------

function renderProfile(profile) {
  const identifiers = Object.entries(profile.identifiers ?? {})
    .filter(([, values]) => values.length).map(([kind, values]) => `${kind}: ${values.join(", ")}`);
  const account = profile.account ? (profile.account.group_id ?? profile.account.domain ?? `#${profile.account.id}`) : "none";
  const events = profile.recent_events ?? [];
  return [
    h("dl", { className: "pairs" },
      h("dt", {}, "Profile"), h("dd", {}, `#${profile.id}`),
      h("dt", {}, "Identifiers"), h("dd", { className: "mono" }, identifiers.join(" · ") || "none"),
      h("dt", {}, "Segments"), h("dd", {}, (profile.segments ?? []).join(", ") || "none"),
      h("dt", {}, "Account"), h("dd", {}, account),
      h("dt", {}, "Last seen"), h("dd", {}, profile.last_seen_at ? new Date(profile.last_seen_at).toLocaleString() : "never")),
    h("h3", {}, "Traits"),
    h("pre", {}, JSON.stringify(profile.traits ?? {}, null, 2)),
    h("h3", {}, `Recent events (${events.length})`),
    h("ul", { className: "events" }, events.map((event) =>
      h("li", {}, h("span", { className: "mono" }, new Date(event.timestamp).toLocaleString()), ` ${event.event ?? event.type}`))),
  ];
}

async function lookUp(event) {
  event.preventDefault();
  const kind = $("lookup-kind").value;
  const value = $("lookup-value").value.trim();
  $("lookup-result").replaceChildren();
  try {
    const profile = await api("GET", `/api/users?${new URLSearchParams({ [kind]: value })}`);
    say("lookup-status", "");
    $("lookup-result").replaceChildren(...renderProfile(profile));
  } catch (error) {
    say("lookup-status", error.message, "error");
  }
}

// --- wiring --------------------------------------------------------------------

$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("admin-token").value.trim());
});
$("sign-out").addEventListener("click", () => signOut());
$("reveal-api-key").addEventListener("click", toggleReveal);
$("copy-api-key").addEventListener("click", copyKey);
$("rotate-api-key").addEventListener("click", rotateKey);
$("refresh-status").addEventListener("click", refreshStatus);
$("settings-form").addEventListener("submit", saveSettings);
$("refresh-segments").addEventListener("click", loadSegments);
$("segment-form").addEventListener("submit", createSegment);
$("refresh-dead-letters").addEventListener("click", loadDeadLetters);
$("replay-all").addEventListener("click", () => replay(null));
$("lookup-form").addEventListener("submit", lookUp);

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved);
