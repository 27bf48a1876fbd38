// What every page shares: the admin API with the signed-in token, DOM building without innerHTML,
// times, and a small line chart over the vendored uPlot. User data (traits, events, payloads,
// reasons) only ever reaches the page as text nodes: h() sets properties and textContent.

import uPlot from "./vendor/uplot/uPlot.esm.js";

const TOKEN_KEY = "connector.admin-token";

export class ApiError extends Error {
  constructor(status, body) {
    // The status answers 503 with its messages (the database unreachable, refusing connections): say the first.
    super(body?.message ?? body?.messages?.[0]?.message ?? `the server answered ${status}`);
    this.status = status;
    this.body = body ?? {};
  }
}

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  keep: (token) => sessionStorage.setItem(TOKEN_KEY, token),
  forget: () => sessionStorage.removeItem(TOKEN_KEY),
  onRefused: () => {},
};

export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token() ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    // A token that stops working (a changed config var) ends the session at once.
    if (response.status === 401) session.onRefused("Your admin token is no longer accepted.");
    throw new ApiError(response.status, data);
  }
  return data;
}

export const query = (params) =>
  new URLSearchParams(Object.entries(params).filter(([, value]) => value !== undefined && value !== null && value !== ""));

// Read-only properties that are set as attributes (an input's datalist).
const ATTRIBUTES = new Set(["list"]);

// h("button", {className: "secondary", onclick}, "text", child, [children]): properties where the
// element has them (className, htmlFor, onclick, ...), attributes otherwise (aria-*, data-*).
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key in node && !key.includes("-") && !ATTRIBUTES.has(key)) node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false)
    .map((child) => (child instanceof Node ? child : String(child))));
  return node;
}

export function say(node, message, kind = "") {
  node.textContent = message;
  node.dataset.kind = kind;
}

export const statusLine = (id) => h("p", { className: "status", id, role: "status" });

export function card(title, ...children) {
  return h("section", { className: "card" }, h("h2", {}, title), ...children);
}

export function time(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

export function json(value) {
  return h("pre", { className: "json" }, JSON.stringify(value, null, 2));
}

export function table(headings, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { className: "empty" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, headings.map((heading) => h("th", { scope: "col" }, heading)))),
    h("tbody", {}, rows));
}

export function pairs(entries) {
  return h("dl", { className: "pairs" }, entries.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

// A datalist for pickers: the browser offers the names, a person may still type another.
export function datalist(id, names) {
  return h("datalist", { id }, names.map((name) => h("option", { value: name })));
}

export function link(href, text) {
  return h("a", { href }, text);
}

// --- charts ------------------------------------------------------------------------------

const PALETTE = ["#2f5bd3", "#1b7a3d", "#c77700", "#b3261e", "#6b3fa0", "#0f7c8c", "#8a5a00", "#5d6678"];

// A time series chart: `series` is [[name, values]], one value per step from `start` (seconds).
// The legend is ours (name and total, as text), so a reader and a test see the figures without the canvas.
export function lineChart(title, start, step, series, height = 220) {
  const holder = h("div", { className: "chart" });
  const totals = series.map(([, values]) => h("strong", {}, String(sum(values))));
  const legend = h("ul", { className: "legend" }, series.map(([name], index) => {
    const swatch = h("span", { className: "swatch", "aria-hidden": "true" });
    swatch.style.background = PALETTE[index % PALETTE.length];
    return h("li", { "data-series": name }, swatch, `${name} `, totals[index]);
  }));
  const shown = h("p", { className: "help", "aria-live": "polite" }, "Drag across the chart to zoom in.");
  const figure = h("figure", { className: "chart-figure" }, h("figcaption", {}, title), holder, legend);
  if (!series.length) {
    holder.append(h("p", { className: "empty" }, "No traffic in this period."));
    return figure;
  }
  const times = series[0][1].map((_, index) => start + index * step);
  const whole = { min: times[0], max: times[times.length - 1] };
  let chart = null;
  // Dragging across the chart zooms into that span (double-click also zooms out); the button is the way back
  // by keyboard, shown only while zoomed.
  const zoomOut = h("button", { type: "button", className: "secondary zoom-out", hidden: true,
    onclick: () => chart?.setScale("x", whole) }, "Zoom out");
  const zoomed = (u) => u.scales.x.min > whole.min || u.scales.x.max < whole.max;
  // The legend's totals and the line below say what the chart shows: the whole period or the zoomed span.
  function showSpan(u) {
    const { min, max } = u.scales.x;
    series.forEach(([, values], index) => {
      totals[index].textContent = String(sum(values.filter((_, at) => times[at] >= min && times[at] <= max)));
    });
    zoomOut.hidden = !zoomed(u);
    shown.textContent = zoomed(u)
      ? `Showing ${time(new Date(min * 1000).toISOString())} to ${time(new Date(max * 1000).toISOString())}.`
      : "Drag across the chart to zoom in.";
  }
  const options = {
    height,
    legend: { show: false },
    cursor: { drag: { x: true, y: false, setScale: true } },
    hooks: { setScale: [(u, key) => { if (key === "x") showSpan(u); }] },
    scales: { x: { time: true } },
    axes: [{ stroke: "#5d6678" }, { stroke: "#5d6678", size: 48 }],
    series: [{}, ...series.map(([name], index) => ({
      label: name, stroke: PALETTE[index % PALETTE.length], width: 1.5, points: { show: false },
    }))],
  };
  // Drawn once the figure is in the document, as wide as it is laid out.
  requestAnimationFrame(() => {
    chart = new uPlot({ ...options, width: holder.clientWidth || 600 }, [times, ...series.map(([, values]) => values)],
      holder);
  });
  figure.append(shown, zoomOut);
  return figure;
}

// Horizontal bars drawn with elements (no canvas): [[label, value, detail]].
export function bars(rows, empty) {
  if (!rows.length) return h("p", { className: "empty" }, empty);
  const top = Math.max(...rows.map(([, value]) => value), 1);
  return h("ul", { className: "bars" }, rows.map(([label, value, detail]) => {
    // A zero draws no bar; any other value at least a sliver, so it is seen.
    const bar = h("span", { className: "bar", hidden: value <= 0 });
    bar.style.width = `${Math.max(2, (100 * value) / top)}%`;
    return h("li", {}, h("span", { className: "bar-label" }, label), h("span", { className: "bar-track" }, bar),
      h("span", { className: "bar-value" }, detail ?? String(value)));
  }));
}

export const sum = (values) => values.reduce((total, value) => total + value, 0);
