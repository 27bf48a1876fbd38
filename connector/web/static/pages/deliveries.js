// Deliveries: dead letters, newest first and paged, with Segment's reason and the payload; replay one,
// the selected ones, or every waiting letter (with their original messageIds: Segment deduplicates).

import { api, card, h, json, query, say, statusLine, time } from "../lib.js";

const PAGE = 50;

function describe(message) {
  const who = message?.userId ?? message?.anonymousId ?? message?.groupId ?? "";
  return [message?.type, message?.event, who].filter(Boolean).join(" · ") || "(message)";
}

export async function render(root, _params, app) {
  const status = statusLine("dead-letters-status");
  const body = h("tbody");
  const letters = h("table", { id: "dead-letters-table" }, h("thead", {}, h("tr", {},
    ["", "When", "Message", "Reason", "Status", ""].map((heading) => h("th", { scope: "col" }, heading)))), body);
  const older = h("button", { type: "button", className: "secondary", hidden: true }, "Older");
  const selected = new Set();
  const replaySelected = h("button", { type: "button", className: "secondary", disabled: true },
    "Replay selected");
  const replayAll = h("button", { type: "button", hidden: true }, "Replay all");
  const waiting = h("p", { className: "help", id: "dead-letters-waiting" });
  let last = null;

  function row(letter) {
    const pick = h("input", { type: "checkbox", "aria-label": `Select dead letter ${letter.id}` });
    pick.addEventListener("change", () => {
      if (pick.checked) selected.add(letter.id); else selected.delete(letter.id);
      replaySelected.disabled = !selected.size;
    });
    return h("tr", { "data-letter": letter.id },
      h("td", {}, pick),
      h("td", {}, time(letter.created_at)),
      h("td", {}, h("details", {}, h("summary", { className: "mono" }, describe(letter.message)), json(letter.message))),
      h("td", { className: "reason" }, letter.reason),
      h("td", { className: "number" }, letter.status_code ?? "—"),
      h("td", {}, h("button", { type: "button", className: "secondary", "aria-label": `Replay dead letter ${letter.id}`,
        onclick: () => replay([letter.id]) }, "Replay")));
  }
  async function load(reset) {
    if (reset) { body.replaceChildren(); last = null; selected.clear(); replaySelected.disabled = true; }
    const page = await api("GET", `/api/dead-letters?${query({ limit: PAGE, before_id: last })}`);
    body.append(...page.dead_letters.map(row));
    last = page.dead_letters.at(-1)?.id ?? last;
    older.hidden = page.dead_letters.length < PAGE;
    letters.hidden = !body.children.length;
    replayAll.hidden = replaySelected.hidden = !page.waiting;
    say(waiting, page.waiting ? `${page.waiting} waiting to be replayed.`
      : "No dead letters: every message was delivered or is on its way.");
  }
  async function replay(ids) {
    try {
      const { replayed, failed } = await api("POST", "/api/dead-letters/replay", ids ? { ids } : {});
      await load(true);
      say(status, `Replayed ${replayed}` + (failed ? `; ${failed} failed again and stay listed.` : "."),
        failed ? "error" : "ok");
      await app.refreshStatus();
    } catch (error) {
      say(status, `Replay failed: ${error.message}`, "error");
    }
  }
  replaySelected.addEventListener("click", () => replay([...selected]));
  replayAll.addEventListener("click", () => replay(null));
  older.addEventListener("click", () => load(false));
  root.append(
    h("div", { className: "page-head" }, h("h2", {}, "Deliveries"), replaySelected, replayAll),
    card("Dead letters", waiting, status, letters, older));
  await load(true);
}
