// Profiles: search users (user id, anonymous id, email) and accounts (group id, domain); a user's or an
// account's page with identifiers, traits and when each was set, segments and when they were entered,
// the scanners' persona, fit and usage pattern, usage, the events timeline and the activity log (paged), what was last sent to Segment and what would
// be sent now, and erasure with a confirmation.

import { api, bars, card, h, json, link, pairs, query, say, statusLine, table, time } from "../lib.js";

const PAGE = 20;

// --- search ------------------------------------------------------------------------------------

function searchForm(root, kind, text) {
  const results = h("div", { id: "search-results" });
  const status = statusLine("search-status");
  const kindSelect = h("select", { id: "search-kind", "aria-label": "Search" },
    h("option", { value: "users", selected: kind === "users" }, "Users"),
    h("option", { value: "accounts", selected: kind === "accounts" }, "Accounts"));
  const box = h("input", { id: "search-text", type: "search", required: true, value: text ?? "",
    "aria-label": "Starts with",
    placeholder: "the start of a user id, anonymous id, email or email domain (acme); of a group id or domain for accounts" });
  const form = h("form", { className: "row search" }, kindSelect, box, h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/profiles/search/${kindSelect.value}/${encodeURIComponent(box.value.trim())}`;
  });
  root.append(h("div", { className: "page-head" }, h("h2", {}, "Profiles")), card("Find a profile", form, status, results));
  return { results, status };
}

async function renderSearch(root, kind = "users", text = "") {
  const { results, status } = searchForm(root, kind, text);
  if (!text) return;
  try {
    const found = await api("GET", `/api/${kind}/search?${query({ q: text })}`);
    const rows = kind === "users"
      ? found.users.map(userRow)
      : found.accounts.map((account) => h("tr", {},
        h("td", {}, link(`#/profiles/account/${account.id}`, `Account #${account.id}`)),
        h("td", {}, account.group_id ?? "—"), h("td", {}, account.domain ?? "—"), h("td", {}, String(account.name ?? "—"))));
    const headings = kind === "users" ? USER_HEADINGS
      : ["Profile", "Group id", "Domain", "Name"];
    results.replaceChildren(table(headings, rows, `No ${kind === "users" ? "user" : "account"} starts with “${text}”.`));
  } catch (error) {
    say(status, error.message, "error");
  }
}

// --- pieces of a profile -----------------------------------------------------------------------

// A user in a list (search results, an account's users): named by what a person knows it by.
const USER_HEADINGS = ["User", "Email", "anonymousId", "Last seen"];

function userRow(user) {
  const name = user.user_id ?? user.email ?? user.anonymous_id ?? `#${user.id}`;
  return h("tr", { "data-user": user.id }, h("td", {}, link(`#/profiles/user/${user.id}`, name)),
    h("td", {}, user.email ?? "—"), h("td", {}, user.anonymous_id ?? "—"), h("td", {}, time(user.last_seen_at)));
}

const compact = (value) => h("code", { className: "compact" }, JSON.stringify(value));

function traitsTable(traits, stamps) {
  return table(["Trait", "Value", "Set at"], Object.keys(traits).sort().map((name) => h("tr", { "data-trait": name },
    h("th", { scope: "row" }, name), h("td", {}, compact(traits[name])), h("td", {}, time(stamps?.[name])))),
  "No traits.");
}

function segmentsTable(memberships) {
  return table(["Segment", "Entered"], (memberships ?? []).map((membership) => h("tr", {},
    h("td", {}, link(`#/segments/${membership.id}`, membership.name)), h("td", {}, time(membership.entered_at)))),
  "In no segment.");
}

function usageCard(usage) {
  const features = usage.features.map((feature) => [feature.feature, feature.count,
    `${feature.count} (score ${feature.score})`]);
  const trend = usage.trend.map((week) => [week.week, week.count, String(week.count)]);
  return card("Usage",
    h("div", { className: "grid-2" },
      h("div", {}, h("h3", {}, "Top features"), bars(features, "No feature usage.")),
      h("div", {}, h("h3", {}, "Weekly trend (12 ISO weeks)"), bars(trend, "No usage."))));
}

// A list that pages backwards: `fetchPage(beforeId)` gives entries newest first with an `id`.
function pagedTable(id, headings, fetchPage, row, empty) {
  const body = h("tbody");
  const older = h("button", { type: "button", className: "secondary", hidden: true }, "Older");
  const holder = h("div", { id }, h("table", {}, h("thead", {}, h("tr", {}, headings.map((heading) =>
    h("th", { scope: "col" }, heading)))), body), older);
  let last = null;
  async function more() {
    const entries = await fetchPage(last);
    body.append(...entries.map(row));
    last = entries.at(-1)?.id ?? last;
    older.hidden = entries.length < PAGE;
    if (!body.children.length) holder.replaceChildren(h("p", { className: "empty" }, empty));
  }
  older.addEventListener("click", () => more());
  return { holder, more };
}

// What an entry's outcome means to a reader: outgoing.<entity>.<outcome>. A skip is the filter or the loop guard
// doing its job (neutral), a failure is something to act on.
const SEVERITY = { success: "ok", skip: "neutral", error: "error", dead_letter: "error" };

function severity(action) {
  return action.startsWith("outgoing.") ? SEVERITY[action.split(".").at(-1)] ?? "neutral" : "neutral";
}

// A detail's value as text: nested objects as their own fields (traits.plan), lists joined ("none" when empty).
function flatten(details, prefix = "") {
  return Object.entries(details).flatMap(([name, value]) => {
    const key = prefix + name;
    if (value && typeof value === "object" && !Array.isArray(value)) {
      return Object.keys(value).length ? flatten(value, `${key}.`) : [[key, "{}"]];
    }
    if (!Array.isArray(value)) return [[key, String(value)]];
    return [[key, value.length ? value.map((item) => (typeof item === "object" ? JSON.stringify(item) : String(item)))
      .join(", ") : "none"]];
  });
}

function activityRow(entry) {
  const { reason, ...rest } = entry.details ?? {};
  const fields = flatten(rest);
  return h("tr", { "data-action": entry.action, "data-severity": severity(entry.action) },
    h("td", {}, time(entry.created_at)), h("td", { className: "mono action" }, entry.action),
    h("td", {}, reason ? h("p", { className: "activity-reason" }, reason) : null,
      fields.length ? h("dl", { className: "fields" }, fields.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]))
        : null));
}

function outgoingCard(outgoing) {
  return card("Sent to Segment",
    h("div", { className: "grid-2" },
      h("div", { id: "last-sent" }, h("h3", {}, "Last sent"), outgoing.last_sent.length
        ? outgoing.last_sent.map((entry) => h("div", {}, h("p", { className: "help" },
          `${entry.details.type}, ${time(entry.created_at)}`), json(entry.details)))
        : h("p", { className: "empty" }, "Nothing delivered yet (or before the activity log's retention).")),
      h("div", { id: "would-send" }, h("h3", {}, "Would be sent now"),
        outgoing.messages.length ? outgoing.messages.map((message) => json(message))
          : h("p", { className: "empty" }, "Nothing would be sent now."),
        outgoing.not_sent.length ? h("ul", { className: "messages" },
          outgoing.not_sent.map((reason) => h("li", {}, `Not sent: ${reason}`))) : null)));
}

// --- erasure ------------------------------------------------------------------------------------

// What an erasure's counts (rows per table, as DELETE /api/users/{id} answers) mean, in words, in the order they
// are said: [one, many], or one phrase for what is the same however many rows hold it.
const ERASED = [
  ["users", "the profile"],
  ["identifiers", ["identifier", "identifiers"]],
  ["events", ["event", "events"]],
  ["activity", ["activity entry", "activity entries"]],
  ["usage", ["daily usage count", "daily usage counts"]],
  ["audiences", ["audience membership", "audience memberships"]],
  ["segments", ["segment membership", "segment memberships"]],
  ["transitions", ["segment entry or exit", "segment entries and exits"]],
  ["outbox", ["message waiting to be sent", "messages waiting to be sent"]],
  ["delivery_state", "the delivery records"],
  ["dead_letters", ["dead letter", "dead letters"]],
  ["journal", ["received message's payload", "received messages' payloads"]],
  ["audit", ["identity audit entry", "identity audit entries"]],
];

const counted = (count, [one, many]) => `${count} ${count === 1 ? one : many}`;

function erasureSummary(erased) {
  const known = new Map(ERASED);
  // A count the API learns later is still said, by its name.
  const names = [...known.keys(), ...Object.keys(erased.erased).filter((name) => !known.has(name))];
  const parts = names.filter((name) => erased.erased[name] > 0).map((name) => {
    const words = known.get(name) ?? [name.replaceAll("_", " "), name.replaceAll("_", " ")];
    return typeof words === "string" ? words : counted(erased.erased[name], words);
  });
  const removed = parts.length ? `Removed ${parts.join(", ")}.` : "Nothing else was stored about this user.";
  return `${removed} ${counted(erased.suppressed, ["identifier is", "identifiers are"])} on the suppression list: `
    + "later messages naming them are dropped.";
}

// --- a user ------------------------------------------------------------------------------------

async function renderUser(root, id) {
  const [user, usage, outgoing] = await Promise.all([api("GET", `/api/users/${id}`),
    api("GET", `/api/users/${id}/usage`), api("GET", `/api/users/${id}/outgoing`)]);
  const status = statusLine("erase-status");
  const erase = h("button", { type: "button", className: "danger", onclick: async () => {
    const who = user.user_id ?? `#${user.id}`;
    if (!confirm(`Erase user ${who}? Their identifiers, events, activity and usage are deleted, and later messages `
      + "for them are dropped until removed from the suppression list. This cannot be undone.")) return;
    try {
      const erased = await api("DELETE", `/api/users/${user.id}`);
      root.replaceChildren(h("div", { className: "page-head" }, h("h2", {}, `User ${who} erased`)),
        card("Erased", h("p", { id: "erased", role: "status" }, erasureSummary(erased)),
          link("#/profiles", "Back to the search")));
    } catch (error) {
      say(status, error.message, "error");
    }
  } }, "Erase user");
  const ids = user.identifiers;
  const events = pagedTable("events", ["When", "Event", "Type", "Source", "Properties"],
    async (before) => (await api("GET", `/api/users/${id}/events?${query({ limit: PAGE, before_id: before })}`)).events,
    (event) => h("tr", {}, h("td", {}, time(event.timestamp)), h("td", {}, event.event ?? event.type),
      h("td", {}, event.type), h("td", {}, event.source), h("td", {}, compact(event.properties))),
    "No events.");
  const activity = pagedTable("activity", ["When", "What", "Details"],
    async (before) => (await api("GET", `/api/users/${id}/activity?${query({ limit: PAGE, before_id: before })}`)).activity,
    activityRow, "No activity.");
  const account = user.account;
  root.append(
    h("div", { className: "page-head" }, h("h2", {}, `User ${user.user_id ?? ""} #${user.id}`),
      link("#/profiles", "Search"), erase),
    status,
    h("div", { className: "grid-2" },
      card("Identifiers", pairs([
        ["userId", ids.user_id.join(", ") || "—"],
        ["anonymousId", ids.anonymous_id.join(", ") || "—"],
        ids.email.length || typeof user.traits.email !== "string" ? ["Email", ids.email.join(", ") || "—"]
          : ["Email (trait)", user.traits.email],
        ["Account", account ? link(`#/profiles/account/${account.id}`,
          account.group_id ?? account.domain ?? `#${account.id}`) : "none"],
        ["Created", time(user.created_at)],
        ["Last seen (message time)", time(user.last_seen_at)],
      ])),
      card("Segments", segmentsTable(user.memberships))),
    card("Scanners", pairs([
      ["Seniority", user.persona?.seniority ?? "—"],
      ["Department", user.persona?.department ?? "—"],
      ["Usage pattern", user.usage?.pattern ?? "—"],
      ["Account fit", account?.icp?.fit ? `${account.icp.fit} (score ${account.icp.score})` : "—"],
    ])),
    card("Traits", traitsTable(user.traits, user.trait_timestamps)),
    outgoingCard(outgoing),
    usageCard(usage),
    card("Events", events.holder),
    card("Activity", activity.holder));
  await Promise.all([events.more(), activity.more()]);
}

// --- an account ------------------------------------------------------------------------------------

async function renderAccount(root, id) {
  const [account, usage] = await Promise.all([api("GET", `/api/accounts/${id}`), api("GET", `/api/accounts/${id}/usage`)]);
  const activity = pagedTable("activity", ["When", "What", "Details"],
    async (before) => (await api("GET", `/api/accounts/${id}/activity?${query({ limit: PAGE, before_id: before })}`)).activity,
    activityRow, "No activity.");
  const members = pagedTable("account-users", USER_HEADINGS,
    async (before) => (await api("GET", `/api/accounts/${id}/users?${query({ limit: PAGE, before_id: before })}`)).users,
    userRow, "No user is linked to this account.");
  root.append(
    h("div", { className: "page-head" }, h("h2", {}, `Account ${account.group_id ?? account.domain ?? ""} #${account.id}`),
      link("#/profiles/search/accounts", "Search")),
    h("div", { className: "grid-2" },
      card("Identifiers", pairs([["Group id", account.group_id ?? "—"], ["Domain", account.domain ?? "—"],
        ["Created", time(account.created_at)], ["Updated", time(account.updated_at)]])),
      card("Segments", segmentsTable(account.memberships))),
    card("Scanners", pairs([
      ["Ideal customer profile", account.icp?.fit ? `${account.icp.fit} (score ${account.icp.score})` : "—"],
      ["Usage pattern", account.usage?.pattern ?? "—"],
    ])),
    card("Users", members.holder),
    card("Traits", traitsTable(account.traits, account.trait_timestamps)),
    usageCard(usage),
    card("Activity", activity.holder));
  await Promise.all([members.more(), activity.more()]);
}

export async function render(root, params) {
  const [what, ...rest] = params;
  if (what === "user" && rest[0]) return renderUser(root, rest[0]);
  if (what === "account" && rest[0]) return renderAccount(root, rest[0]);
  if (what === "search") return renderSearch(root, rest[0], rest.slice(1).join("/"));
  return renderSearch(root);
}
