// Overview: the verdict and its messages, the latest sync (queued, sent, skipped, failed, waiting) with
// "Send to everyone now", journal lag and outbox depth, traffic of the last 24 hours (in by type and
// outcome, out by outcome) at one-minute resolution, the messages each browser write key sent, and the last errors.

import { api, card, h, lineChart, link, pairs, say, statusLine, sum, table, time } from "../lib.js";

const REFRESH_MS = 30_000;
const SYNC_REFRESH_MS = 2_000; // while a sync's rows wait in the outbox, its progress is followed closely

function figures(status) {
  const journal = status.journal ?? {};
  return pairs([
    ["Verdict", h("span", { className: "verdict", "data-status": status.status }, status.status)],
    ["Journal waiting", `${journal.pending ?? 0} messages`
      + (status.journal_oldest_pending_at ? ` (oldest ${time(status.journal_oldest_pending_at)})` : "")],
    ["Journal processed / skipped / failed", `${journal.processed ?? 0} / ${journal.skipped ?? 0} / ${journal.failed ?? 0}`],
    ["Outbox depth", `${status.outbox?.depth ?? 0} waiting, ${status.outbox?.failing ?? 0} failing`],
    ["Dead letters (last hour)", String(status.dead_letters_last_hour ?? 0)],
    ["Workers alive", `${status.workers?.alive ?? 0} (last heartbeat ${time(status.workers?.last_heartbeat_at)})`],
  ]);
}

function messages(status) {
  if (!status.messages.length) return h("p", { className: "ok" }, "Everything is working.");
  return h("ul", { className: "messages" }, status.messages.map((message) =>
    h("li", { "data-severity": message.severity, "data-code": message.code }, h("strong", {}, `${message.severity}: `),
      message.message, message.link ? [" (", link(message.link, "fix it"), ")"] : "")));
}

const TRIGGERS = { settings: "saving the settings", resync: "Send to everyone now (or connector resync)" };

function syncFigures(sync) {
  if (!sync) {
    return h("p", { className: "empty", id: "sync-none" }, "No sync yet. Saving a segment under User segments to send "
      + "(Settings) sends its members at once; Send to everyone now sends everyone in the filter.");
  }
  const figure = (id, value) => h("span", { id: `sync-${id}` }, String(value));
  const queued = [`${sync.queued.users} users`, sync.queued.accounts ? `${sync.queued.accounts} accounts` : ""];
  return pairs([
    ["Started", `${time(sync.started_at)}, by ${TRIGGERS[sync.trigger] ?? sync.trigger}`],
    ["Segments", sync.segments.join(", ") || "—"],
    ["Queued", figure("queued", queued.filter(Boolean).join(" and "))],
    ["Sent since", figure("sent", `${sync.sent} users`)],
    ["Skipped (unchanged or not in the filter)", figure("skipped", `${sync.skipped} users`)],
    ["Failed (retried or dead-lettered)", figure("failed", `${sync.failed} users`)],
    ["Waiting in the outbox", figure("waiting", sync.waiting ? `${sync.waiting} messages` : "none: done")],
  ]);
}

function charts(overview) {
  const start = Date.parse(overview.start) / 1000;
  const step = overview.step_seconds;
  const incoming = Object.entries(overview.incoming).filter(([, values]) => sum(values) > 0).sort();
  const outgoing = Object.entries(overview.outgoing);
  return h("div", { className: "charts" },
    lineChart("Messages in, by type and outcome (per minute)", start, step, incoming),
    lineChart("Messages out: sent, skipped, retried, dead-lettered (per minute)", start, step, outgoing));
}

function byWriteKey(overview) {
  return table(["Write key", "Messages in, last 24 hours"], overview.write_keys.map((key) => h("tr", {},
    h("td", {}, key.name, key.revoked ? " (revoked)" : ""),
    h("td", { className: "number" }, String(key.messages)))),
  h("span", {}, "No browser write key sent anything (", link("#/setup", "create one"), ")."));
}

function errors(overview) {
  return table(["When", "What", "Status", "Reason"], overview.last_errors.map((error) => h("tr", {},
    h("td", {}, time(error.at)),
    h("td", {}, error.kind, error.entity_id ? h("span", {}, " · ", h("a", {
      href: `#/profiles/${error.entity}/${error.entity_id}` }, `${error.entity} ${error.name ?? `#${error.entity_id}`}`)) : ""),
    h("td", { className: "number" }, error.status_code ?? "—"),
    h("td", { className: "reason" }, error.reason))), "No errors recorded.");
}

export async function render(root, _params, app) {
  const body = h("div", { className: "stack" });
  const refresh = h("button", { type: "button", className: "secondary", onclick: () => load() }, "Refresh");
  const syncBody = h("div", { id: "sync" });
  const syncStatus = statusLine("sync-status");
  const sendEveryone = h("button", { type: "button", onclick: async () => {
    if (!confirm("Send everyone in the outbound filter to Segment now? Profiles Segment already holds "
      + "unchanged are skipped.")) return;
    sendEveryone.disabled = true;
    try {
      const { sync } = await api("POST", "/api/sync");
      say(syncStatus, `Queued ${sync.queued.users} users: they are being sent now.`, "ok");
      showSync(sync);
    } catch (error) {
      say(syncStatus, `Not sent: ${error.message}`, "error");
    } finally {
      sendEveryone.disabled = false;
    }
  } }, "Send to everyone now");
  const syncCard = card("Sync to Segment", syncBody,
    h("div", { className: "row" }, sendEveryone), syncStatus);
  root.append(h("div", { className: "page-head" }, h("h2", {}, "Overview"), refresh), body);
  let syncTimer = null;
  let gone = false;
  function showSync(sync) {
    syncBody.replaceChildren(syncFigures(sync));
    clearTimeout(syncTimer);
    if (sync?.waiting && !gone) syncTimer = setTimeout(() => followSync().catch(() => {}), SYNC_REFRESH_MS);
  }
  async function followSync() {
    showSync((await api("GET", "/api/sync")).sync);
  }
  async function load() {
    const [status, overview, { sync }] = await Promise.all(
      [app.refreshStatus(), api("GET", "/api/overview"), api("GET", "/api/sync")]);
    if (!status) return;
    showSync(sync);
    body.replaceChildren(
      card("Status", h("div", { className: "grid-2" }, messages(status), figures(status))),
      syncCard,
      card("Traffic, last 24 hours", charts(overview)),
      card("Browser write keys", byWriteKey(overview)),
      card("Last errors", errors(overview)));
  }
  await load();
  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
  return () => { gone = true; clearInterval(timer); clearTimeout(syncTimer); };
}
