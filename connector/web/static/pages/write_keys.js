// The Setup page's "Websites" card: browser write keys for analytics.js. Create one (its key is shown this once,
// then only masked: the connector keeps its hash), revoke one, and for a chosen key the npm code and the
// snippet with the connector's URL (and the key, when known) filled in.

import { api, card, h, say, statusLine, table, time } from "../lib.js";

const ANALYTICS_NEXT = "1.84.3"; // the version the test suite runs against (tests/package.json)
const UNKNOWN_KEY = "<the write key shown when it was created>";

export function npmCode(writeKey, connector) {
  return [
    `// npm install @segment/analytics-next@${ANALYTICS_NEXT}`,
    'import { AnalyticsBrowser } from "@segment/analytics-next";',
    "",
    "// cdnURL: analytics.js reads its settings from the connector, which sends it nowhere else.",
    `export const analytics = AnalyticsBrowser.load({ writeKey: "${writeKey}", cdnURL: "${connector}" });`,
    "",
    "analytics.page();",
  ].join("\n");
}

// The snippet queues the calls made before analytics.js arrives (window.analytics as an array of
// [method, ...arguments]: what its standalone build replays) and loads analytics.js from the connector, which
// serves it as Segment's CDN does; `_cdn` makes it read its settings and its optional parts there too.
export function snippet(writeKey, connector) {
  return [
    "<script>",
    "  (function () {",
    "    var analytics = (window.analytics = window.analytics || []);",
    "    if (analytics.invoked) return;",
    "    analytics.invoked = true;",
    `    analytics._writeKey = "${writeKey}";`,
    `    analytics._cdn = "${connector}";`,
    '    ["page", "identify", "track", "group", "alias", "screen", "reset", "ready", "trackLink", "trackForm",',
    '     "on", "once", "off", "addSourceMiddleware", "setAnonymousId", "debug"].forEach(function (method) {',
    "      analytics[method] = function () {",
    "        analytics.push([method].concat(Array.prototype.slice.call(arguments)));",
    "        return analytics;",
    "      };",
    "    });",
    '    var script = document.createElement("script");',
    "    script.async = true;",
    '    script.src = analytics._cdn + "/analytics.js/v1/" + analytics._writeKey + "/analytics.min.js";',
    "    document.head.appendChild(script);",
    "    analytics.page();",
    "  })();",
    "</script>",
  ].join("\n");
}

function copyButton(code, label, status) {
  return h("button", { type: "button", className: "secondary", "aria-label": label, onclick: async () => {
    try {
      await navigator.clipboard.writeText(code.textContent);
      say(status, "Copied to the clipboard.", "ok");
    } catch (error) {
      say(status, `Could not copy (${error.message}); select the code and copy it by hand.`, "error");
    }
  } }, "Copy");
}

function origins(text) {
  return text.split(/[\s,]+/).map((origin) => origin.trim().replace(/\/+$/, "")).filter(Boolean);
}

export function writeKeysCard(connector) {
  const shown = new Map(); // id -> the full key, for the keys created while this page is open
  const status = statusLine("write-keys-status");
  const list = h("div", { id: "write-keys" });
  const chooser = h("select", { id: "write-key-choice" });
  const choice = h("div", { className: "row", hidden: true }, h("label", { htmlFor: "write-key-choice" }, "Code for"),
    chooser); // no key, nothing to choose: the code below shows where a key goes
  const npm = h("pre", { id: "write-key-npm", className: "whole", tabIndex: 0 });
  const tag = h("pre", { id: "write-key-snippet", className: "whole", tabIndex: 0 });
  const name = h("input", { id: "write-key-name", required: true, maxLength: 200, placeholder: "Marketing site" });
  const allowed = h("input", { id: "write-key-origins", placeholder: "https://shop.example https://www.shop.example" });

  function showCode() {
    const id = Number(chooser.value);
    const key = shown.get(id) ?? UNKNOWN_KEY;
    npm.textContent = npmCode(key, connector);
    tag.textContent = snippet(key, connector);
  }
  chooser.addEventListener("change", showCode);

  async function load(choose) {
    const { write_keys: keys } = await api("GET", "/api/write-keys");
    list.replaceChildren(table(["Name", "Key", "Allowed origins", "Created", ""], keys.map((key) => h("tr", {},
      h("td", {}, key.name),
      h("td", { className: "mono" }, shown.get(key.id) ?? key.key),
      h("td", {}, key.allowed_origins.join(", ") || "any"),
      h("td", {}, time(key.created_at)),
      h("td", {}, h("button", { type: "button", className: "danger", "aria-label": `Revoke ${key.name}`,
        onclick: () => revoke(key) }, "Revoke")))),
    "No write key yet: create one for each website."));
    const previous = choose ?? Number(chooser.value);
    chooser.replaceChildren(...keys.map((key) => h("option", { value: String(key.id) }, `${key.name} (${key.key})`)));
    if (keys.some((key) => key.id === previous)) chooser.value = String(previous);
    choice.hidden = keys.length === 0;
    showCode();
  }

  async function revoke(key) {
    if (!confirm(`Revoke ${key.name}? Websites sending with it are refused from the next call.`)) return;
    try {
      await api("DELETE", `/api/write-keys/${key.id}`);
      shown.delete(key.id);
      say(status, `${key.name} revoked: its calls are refused from now on.`, "ok");
      await load();
    } catch (error) {
      say(status, error.message, "error");
    }
  }

  const form = h("form", { className: "row", onsubmit: async (event) => {
    event.preventDefault();
    try {
      const created = await api("POST", "/api/write-keys", { name: name.value, allowed_origins: origins(allowed.value) });
      shown.set(created.id, created.key);
      name.value = "";
      allowed.value = "";
      say(status, `Created ${created.name}. Copy its key now: it is shown in full only until you leave this page.`, "ok");
      await load(created.id);
    } catch (error) {
      say(status, error.message, "error");
    }
  } },
  h("label", { htmlFor: "write-key-name" }, "Website name"), name,
  h("label", { htmlFor: "write-key-origins" }, "Allowed origins (empty: any)"), allowed,
  h("button", { type: "submit" }, "Create write key"));

  const section = card("Send from a website: analytics.js",
    h("p", {}, "A write key lets a website's analytics.js send page, identify, track and group calls straight to "
      + "this connector (/v1). It is public, so it opens nothing else: not /segment, not this dashboard, and no "
      + "deletion. Allowed origins limit it to your sites."),
    form, status, list, choice,
    h("div", { className: "row" }, h("h4", {}, "With npm"), copyButton(npm, "Copy the npm code", status)), npm,
    h("div", { className: "row" }, h("h4", {}, "Or with a script tag"), copyButton(tag, "Copy the snippet", status)), tag);
  return { section, load };
}
