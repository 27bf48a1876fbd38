// Setup: the automatic way first (segment_workspace.js: Segment's Public API); then, by hand, where Segment sends to (the /segment URL,
// the /v1 host), the API key (reveal, copy, rotate), the shared secret, the steps in Segment's app for both directions, and the browser
// write keys (write_keys.js).

import { api, card, h, link, pairs, say, statusLine } from "../lib.js";
import { workspaceCard } from "./segment_workspace.js";
import { writeKeysCard } from "./write_keys.js";

function steps(items) {
  return h("ol", { className: "steps" }, items.map((item) => h("li", {}, item)));
}

export async function render(root) {
  const [status, { settings }, workspace] = await Promise.all(
    [api("GET", "/api/status"), api("GET", "/api/settings"), workspaceCard()]);
  const keyStatus = statusLine("api-key-status");
  const key = h("input", { id: "api-key", readOnly: true, className: "mono", value: status.api_key ?? "",
    "aria-describedby": "api-key-status" });
  let revealed = false;
  const reveal = h("button", { type: "button", className: "secondary", "aria-pressed": "false" }, "Reveal");
  function show(value, shown) {
    revealed = shown;
    key.value = value;
    reveal.textContent = shown ? "Hide" : "Reveal";
    reveal.setAttribute("aria-pressed", String(shown));
  }
  reveal.addEventListener("click", async () => {
    try {
      if (revealed) show((await api("GET", "/api/status")).api_key, false);
      else show((await api("POST", "/api/api-key/reveal")).api_key, true);
      say(keyStatus, "");
    } catch (error) {
      say(keyStatus, error.message, "error");
    }
  });
  const copy = h("button", { type: "button", className: "secondary", "aria-label": "Copy the key", onclick: async () => {
    try {
      await navigator.clipboard.writeText((await api("POST", "/api/api-key/reveal")).api_key);
      say(keyStatus, "API key copied to the clipboard.", "ok");
    } catch (error) {
      say(keyStatus, `Could not copy (${error.message}); use Reveal and copy it by hand.`, "error");
    }
  } }, "Copy");
  const rotate = h("button", { type: "button", className: "danger", onclick: async () => {
    if (!confirm("Rotate the API key? The current key stops working at once: every Segment destination "
      + "and library that uses it must be given the new one.")) return;
    try {
      show((await api("POST", "/api/api-key/rotate")).api_key, true);
      say(keyStatus, "New API key in force: update the Segment destination and libraries.", "ok");
    } catch (error) {
      say(keyStatus, error.message, "error");
    }
  } }, "Rotate");

  const own = status.public_url ?? location.origin; // PUBLIC_URL: what Segment and websites reach, not this tab
  const segmentUrl = `${own}/segment`;
  const websites = writeKeysCard(own);
  root.append(
    h("div", { className: "page-head" }, h("h2", {}, "Setup")),
    workspace,
    card("Connection",
      pairs([
        ["Segment Webhooks destination URL", h("code", { id: "segment-endpoint" }, segmentUrl)],
        ["Host for Segment libraries (they post to /v1/…)", h("code", { id: "v1-endpoint" }, own)],
        [h("label", { htmlFor: "api-key" }, "API key"), h("div", { className: "row" }, key, reveal, copy, rotate)],
        ["Shared secret", settings.shared_secret
          ? `set (${settings.shared_secret}): Segment must sign each call`
          : h("span", {}, "not set: calls are checked by the API key only (", link("#/settings", "set one"), ")")],
      ]),
      keyStatus),
    h("div", { className: "grid-2" },
      card("Or by hand: receive from Segment with a Webhooks destination", steps([
        "In Segment, open the source whose data this connector should receive, then Add Destination → Webhooks.",
        ["Webhook URL: ", h("code", {}, segmentUrl), "."],
        "Headers: Authorization = Basic base64(<API key>:) — the API key above as the user name, no password.",
        "Shared secret (optional): the same value as the Shared secret setting; each call is then signed (X-Signature).",
        "Enable the destination and send a test event: it appears on the Overview within a minute.",
        "Or send straight from a Segment library: host = this service, write key = the API key.",
      ])),
      card("Or by hand: send to Segment through an HTTP API source", steps([
        "In Segment, Connections → Sources → Add Source → HTTP API; name it after this connector.",
        "Copy its write key.",
        ["In ", link("#/settings", "Settings"), ", paste it as Segment write key (and the API host for the EU)."],
        "Keep the destination's integration name (Webhooks) as Destination integration name: it stops loops.",
        "Choose the user segments (or ALL), attributes and events to send, then save. Saving sends the "
          + "current members of each segment you added at once: no command needed.",
        ["Watch ", link("#/overview", "Overview"), ": its Sync card counts what was queued, sent, skipped and "
          + "failed until nothing waits; messages out appear as sent, skipped (with the reason on each profile) "
          + "or retried."],
        "From then on, changes are sent as they happen: a profile that changes, or enters or leaves a segment, "
          + "is sent within seconds. Send to everyone now (Overview) sends everyone in the filter again.",
      ]))),
    websites.section);
  await websites.load();
}
