// Overview: the verdict and its messages, journal lag and outbox depth, traffic of the last 24 hours
// (in by type and outcome, out by outcome) at one-minute resolution, and the last errors.

import { api, card, h, lineChart, pairs, sum, table, time } from "../lib.js";

const REFRESH_MS = 30_000;

function figures(status) {
  const journal = status.journal ?? {};
  return pairs([
    ["Verdict", h("span", { className: "verdict", "data-status": status.status }, status.status)],
    ["Journal waiting", `${journal.pending ?? 0} messages`
      + (status.journal_oldest_pending_at ? ` (oldest ${time(status.journal_oldest_pending_at)})` : "")],
    ["Journal processed / failed", `${journal.processed ?? 0} / ${journal.failed ?? 0}`],
    ["Outbox depth", `${status.outbox?.depth ?? 0} waiting, ${status.outbox?.failing ?? 0} failing`],
    ["Dead letters (last hour)", String(status.dead_letters_last_hour ?? 0)],
    ["Workers alive", `${status.workers?.alive ?? 0} (last heartbeat ${time(status.workers?.last_heartbeat_at)})`],
  ]);
}

function messages(status) {
  if (!status.messages.length) return h("p", { className: "ok" }, "Everything is working.");
  return h("ul", { className: "messages" }, status.messages.map((message) =>
    h("li", { "data-severity": message.severity }, h("strong", {}, `${message.severity}: `), message.message)));
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

function errors(overview) {
  return table(["When", "What", "Status", "Reason"], overview.last_errors.map((error) => h("tr", {},
    h("td", {}, time(error.at)),
    h("td", {}, error.kind, error.entity_id ? h("span", {}, " · ",
      h("a", { href: `#/profiles/${error.entity}/${error.entity_id}` }, `${error.entity} #${error.entity_id}`)) : ""),
    h("td", { className: "number" }, error.status_code ?? "—"),
    h("td", { className: "reason" }, error.reason))), "No errors recorded.");
}

export async function render(root, _params, app) {
  const body = h("div", { className: "stack" });
  const refresh = h("button", { type: "button", className: "secondary", onclick: () => load() }, "Refresh");
  root.append(h("div", { className: "page-head" }, h("h2", {}, "Overview"), refresh), body);
  async function load() {
    const [status, overview] = await Promise.all([app.refreshStatus(), api("GET", "/api/overview")]);
    if (!status) return;
    body.replaceChildren(
      card("Status", h("div", { className: "grid-2" }, messages(status), figures(status))),
      card("Traffic, last 24 hours", charts(overview)),
      card("Last errors", errors(overview)));
  }
  await load();
  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
  return () => clearInterval(timer);
}
