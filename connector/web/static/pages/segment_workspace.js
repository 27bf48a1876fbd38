// The Setup page's automatic way (Segment's Public API): a token and the region, the workspace's sources to
// tick (a page at a time), connect; then what was created or changed, what drifted with "Repair",
// "Disconnect", and the round-trip test. The admin API is /api/segment-workspace (web/api/segment_workspace.py).

import { api, card, h, pairs, say, statusLine } from "../lib.js";

const ACTIONS = { created: "created", updated: "updated (repaired)", unchanged: "already right", deleted: "deleted",
  unhooked: "its hook to this connector removed (a second one; its other hooks kept)" };

function changeLine(change) {
  const what = change.kind === "source" ? `HTTP API source ${change.slug} (to send back through)`
    : change.kind === "write_key" ? `write key of the source ${change.source_id} (it had none)`
    : `Webhooks destination on ${change.source_name ?? change.source_id} (${change.destination_id})`;
  return `${what}: ${ACTIONS[change.action] ?? change.action}`;
}

// What a connect changed, in lines; one line when nothing needed to.
function changesOf(answer) {
  const lines = [...answer.done.map(changeLine),
    ...answer.settings_changed.map((name) => `setting ${name}: set from the workspace`)];
  return lines.length ? lines : ["Nothing needed changing: everything was already right."];
}

// The sources to tick, listed a page at a time; `chosen` starts ticked. A chosen source on a page not listed
// yet stays chosen: connecting would otherwise delete its destination unseen.
function sourcePicker(credentials, chosen) {
  const list = h("ul", { className: "checks", id: "workspace-sources" });
  const more = h("button", { type: "button", className: "secondary", hidden: true }, "More sources");
  const status = statusLine("workspace-sources-status");
  const heading = h("p", { className: "help", hidden: true }, "Sources that send to this connector:"); // once listed
  let cursor = null;
  async function load() {
    try {
      const page = await api("POST", "/api/segment-workspace/sources", { ...credentials(), cursor: cursor ?? undefined });
      for (const source of page.sources) {
        const box = h("input", { type: "checkbox", value: source.id, id: `source-${source.id}`,
          checked: chosen.has(source.id) || source.chosen || source.way_back, disabled: source.way_back });
        const why = source.way_back ? ": the connector sends back through it, always connected" : "";
        list.append(h("li", {}, box, h("label", { htmlFor: box.id }, `${source.name ?? source.slug} (${source.kind})${why}`)));
      }
      cursor = page.next;
      more.hidden = !cursor;
      heading.hidden = false;
      say(status, list.children.length ? "" : "This workspace has no sources yet.");
    } catch (error) {
      say(status, error.message, "error");
    }
  }
  more.addEventListener("click", load);
  const boxes = () => [...list.querySelectorAll("input")];
  const ticked = () => {
    const listed = new Set(boxes().map((box) => box.value));
    return [...boxes().filter((box) => box.checked).map((box) => box.value),
      ...[...chosen].filter((id) => !listed.has(id))];
  };
  // Listing again (another token, another region) starts from the first page; ticks made so far are kept.
  async function restart() {
    for (const box of boxes()) {
      if (box.checked) chosen.add(box.value);
      else chosen.delete(box.value);
    }
    list.replaceChildren();
    cursor = null;
    await load();
  }
  return { node: h("div", {}, heading, list, more, status), restart, ticked };
}

function connectForm(refresh, chosen = new Set(), connected = null) {
  const token = h("input", { id: "workspace-token", type: "password", autocomplete: "off",
    placeholder: connected ? "the stored token is used" : "" });
  const region = h("select", { id: "workspace-region" },
    h("option", { value: "us" }, "US (api.segmentapis.com)"), h("option", { value: "eu" }, "EU (eu1.api.segmentapis.com)"));
  region.value = connected?.region ?? "us"; // changing sources stays in the connected workspace's region
  const status = statusLine("workspace-status");
  const credentials = () => ({ token: token.value || undefined, region: region.value });
  const picker = sourcePicker(credentials, chosen);
  const connect = h("button", { type: "button", hidden: true }, "Connect");
  const list = h("button", { type: "button", className: "secondary" }, "List sources");
  let listing = null; // one listing at a time: leaving the token field and clicking List sources both ask
  function listSources() {
    listing ??= (async () => {
      await picker.restart();
      connect.hidden = false;
    })().finally(() => { listing = null; });
    return listing;
  }
  list.addEventListener("click", listSources);
  token.addEventListener("change", () => { if (token.value) listSources(); }); // once the token is entered
  region.addEventListener("change", () => { if (!connect.hidden) listSources(); }); // another region's sources
  connect.addEventListener("click", async () => {
    say(status, "Connecting…");
    try {
      const answer = await api("POST", "/api/segment-workspace", { ...credentials(), source_ids: picker.ticked() });
      await refresh(changesOf(answer));
    } catch (error) {
      say(status, [error.message, ...(error.body.done ?? []).map(changeLine)].join(" — "), "error");
    }
  });
  return h("div", { className: "workspace-form" },
    pairs([
      [h("label", { htmlFor: "workspace-token" }, "Public API token"), token],
      [h("label", { htmlFor: "workspace-region" }, "Region"), region],
    ]),
    h("p", { className: "help" }, "A workspace token (Settings → Access Management → Tokens) with the Workspace "
      + "Owner role. It is kept as a secret, to repair and disconnect later."),
    h("div", { className: "row" }, list), picker.node, h("div", { className: "row" }, connect), status);
}

function drift(item) {
  if (item.matches === undefined) return "not checked"; // Segment could not be read
  return item.matches ? "matches" : `drifted: ${item.problems.join("; ")}`;
}

function verdict(state) {
  const [kind, words] = state.error ? ["error", `Segment could not be read: ${state.error}`]
    : state.matches ? ["ok", "Everything matches."] : ["error", "Something drifted: Repair puts it back."];
  return h("p", { className: "status", "data-kind": kind, id: "workspace-verdict" }, words);
}

function connectedView(state, refresh) {
  const status = statusLine("workspace-status");
  const repair = h("button", { type: "button", disabled: state.matches }, "Repair");
  repair.addEventListener("click", async () => {
    try {
      const answer = await api("POST", "/api/segment-workspace", { source_ids: state.source_ids });
      await refresh(changesOf(answer));
    } catch (error) {
      say(status, error.message, "error");
    }
  });
  const disconnect = h("button", { type: "button", className: "danger" }, "Disconnect");
  disconnect.addEventListener("click", async () => {
    if (!confirm("Disconnect the workspace? The Webhooks destinations the connector manages are deleted in "
      + "Segment; the HTTP API source and the write key stay.")) return;
    try {
      const answer = await api("DELETE", "/api/segment-workspace");
      const unhooked = answer.unhooked.length ? `, ${answer.unhooked.length} left with their other hooks` : "";
      await refresh([`Disconnected: ${answer.deleted.length} destinations deleted${unhooked}; the token is forgotten.`]);
    } catch (error) {
      say(status, error.message, "error");
    }
  });
  const change = h("button", { type: "button", className: "secondary" }, "Change sources");
  const holder = h("div", {});
  change.addEventListener("click", () => holder.replaceChildren(connectForm(refresh, new Set(state.source_ids), state)));
  const rows = state.destinations.map((entry) => h("li", { "data-source": entry.source_id },
    `Webhooks destination on ${entry.source_name ?? entry.source_id} (${entry.destination_id}): ${drift(entry)}`));
  return h("div", { id: "workspace-connected" },
    pairs([
      ["Workspace", `${state.workspace.name} (${state.workspace.slug}, ${state.region.toUpperCase()})`],
      ["Token", h("code", {}, state.token)],
      ["Sends back through", `HTTP API source ${state.source.slug}: ${drift(state.source)}`],
    ]),
    h("ul", { className: "workspace-destinations" }, rows),
    verdict(state),
    h("div", { className: "row" }, repair, change, disconnect), status, holder);
}

function roundTrip(latest) {
  const status = statusLine("round-trip-status");
  if (latest) say(status, latest.message, !latest.outcome ? "" : latest.outcome === "works" ? "ok" : "error");
  const button = h("button", { type: "button", className: "secondary" }, "Test the round trip");
  button.addEventListener("click", async () => {
    button.disabled = true;
    say(status, "Sent a test event through the write key; waiting for Segment to deliver it back…");
    try {
      const answer = await api("POST", "/api/segment-workspace/round-trip", {});
      say(status, answer.message, answer.outcome === "works" ? "ok" : "error");
    } catch (error) {
      say(status, error.message, "error");
    } finally {
      button.disabled = false;
    }
  });
  return h("div", {}, h("h3", {}, "Round trip"),
    h("p", { className: "help" }, "One test event goes out through the write key and must come back to /segment "
      + "through the Webhooks destination; it is never stored as anyone's data."),
    h("div", { className: "row" }, button), status);
}

// The card, rendered again (with the changes just made) after every action.
export async function workspaceCard() {
  const section = card("Connect Segment automatically");
  section.id = "segment-workspace";
  async function refresh(changes = []) {
    const state = await api("GET", "/api/segment-workspace");
    const body = state.connected ? connectedView(state, refresh) : connectForm(refresh);
    const done = changes.length
      ? h("div", { id: "workspace-changes" }, h("p", {}, "What changed:"), h("ul", {}, changes.map((line) => h("li", {}, line))))
      : null;
    section.replaceChildren(section.firstChild, body, done ?? "", roundTrip(state.round_trip));
  }
  await refresh();
  return section;
}
