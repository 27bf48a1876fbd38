// The dashboard's shell: sign in, the status banner, and hash routes (#/segments/12) to one ES module
// per page under pages/. A page module exports render(root, params, app) and, if it runs timers,
// returns a function that stops them; the next navigation calls it. A page holding changes not yet saved
// says so through app.guard(unsaved): leaving it for another page, or closing the tab, asks first.

import { api, h, link, session, say } from "./lib.js";

const PAGES = ["overview", "settings", "segments", "profiles", "deliveries", "setup"];
const $ = (id) => document.getElementById(id);
let leave = null;
let rendering = 0;
let unsaved = null; // the page's own () => boolean: whether it holds changes not yet saved
let shown = location.hash; // the route on screen, to come back to when leaving is cancelled

export const app = {
  // Pages call this after a change that can move the verdict (settings saved, letters replayed).
  refreshStatus,
  guard: (check) => { unsaved = check; },
};

async function signIn(token) {
  session.keep(token);
  try {
    showStatus(await api("GET", "/api/status"));
  } catch (error) {
    signOut(error.status === 401 ? "That admin token was not accepted."
      : `Could not reach the connector: ${error.message}`);
    return;
  }
  $("sign-in").hidden = true;
  $("page").hidden = false;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  await route();
}

function signOut(message = "") {
  session.forget();
  leave?.();
  leave = null;
  unsaved = null;
  for (const id of ["page", "nav", "sign-out", "status-banner"]) $(id).hidden = true;
  $("page").replaceChildren();
  $("sign-in").hidden = false;
  $("server-meta").textContent = "";
  say($("sign-in-error"), message);
  $("admin-token").value = "";
  $("admin-token").setAttribute("aria-invalid", message ? "true" : "false");
  $("admin-token").focus();
}
session.onRefused = signOut;

function showStatus(status) {
  $("server-meta").textContent = `version ${status.version} · ${status.database}`;
  const banner = $("status-banner");
  banner.dataset.status = status.status;
  banner.replaceChildren(
    h("strong", { className: "verdict" }, `Status: ${status.status}`),
    h("ul", {}, status.messages.map((message) =>
      h("li", { "data-code": message.code, "data-severity": message.severity }, message.message,
        message.link ? [" (", link(message.link, "fix it"), ")"] : ""))));
  banner.hidden = !status.messages.length;
}

async function refreshStatus() {
  try {
    const status = await api("GET", "/api/status");
    showStatus(status);
    return status;
  } catch (error) {
    if (error.status !== 401) say($("server-meta"), `status unavailable: ${error.message}`, "error");
    return null;
  }
}

async function route() {
  if (!session.token()) return;
  const [name = "overview", ...params] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const page = PAGES.includes(name) ? name : "overview";
  for (const anchor of $("nav").querySelectorAll("a")) {
    anchor.toggleAttribute("aria-current", anchor.getAttribute("href") === `#/${page}`);
    if (anchor.hasAttribute("aria-current")) anchor.setAttribute("aria-current", "page");
  }
  leave?.();
  leave = null;
  unsaved = null;
  shown = location.hash;
  const ticket = ++rendering;
  const root = h("div", { className: "page", "data-page": page });
  $("page").replaceChildren(root);
  document.title = `${page[0].toUpperCase()}${page.slice(1)} · Segment connector`;
  const module = await import(`./pages/${page}.js`);
  if (ticket !== rendering) return; // another navigation started meanwhile
  try {
    leave = (await module.render(root, params.filter(Boolean), app)) ?? null;
  } catch (error) {
    if (error.status === 401) return;
    root.append(h("p", { className: "status", "data-kind": "error", role: "alert" },
      `This page could not load: ${error.message}`));
  }
}

$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("admin-token").value.trim());
});
$("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", () => {
  if (unsaved?.() && !confirm("This page has changes that are not saved. Leave it and lose them?")) {
    history.replaceState(null, "", shown || location.pathname); // back to the page, its changes still there (no second hashchange)
    return;
  }
  route();
});
// Closing or reloading the tab: the browser asks in its own words.
window.addEventListener("beforeunload", (event) => {
  if (unsaved?.()) event.preventDefault();
});

const saved = session.token();
if (saved) signIn(saved);
