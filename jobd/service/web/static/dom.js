// DOM helpers. Every value from a job goes into the page as TEXT (text nodes,
// textContent, attribute values); nothing here parses HTML, so a job named
// "<img src=x onerror=alert(1)>" shows as those characters.

/**
 * Build an element: h("td", {class: "x", "data-job-id": 4}, "text", child).
 * Attribute values are set with setAttribute (never parsed as markup); an
 * attribute whose value is null, undefined or false is left out; children may be
 * strings, numbers, nodes, arrays of those, or null (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "href") {
      node.setAttribute("href", safeHref(String(value)));
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

/** Append children (strings become text nodes). */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Links stay on this origin: anything but a path becomes "#". */
function safeHref(value) {
  return value.startsWith("/") && !value.startsWith("//") ? value : "#";
}

/** Replace every child of ``node``. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** "2026-12-01 20:15:03" in the browser's zone, or "—" for null. */
export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "1h 02m", "3m 05s", "12s" for a number of seconds. */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hrs / 24)}d ${hrs % 24}h`;
}

/** JSON of user data, as text (for params and outputs). */
export function fmtJson(value) {
  if (value === null || value === undefined) return "—";
  return JSON.stringify(value, null, 1);
}

/** The state badge: the MediaOps colour (by data-state in the CSS) and the name as text. */
export function stateBadge(state) {
  return h("span", { class: "state", "data-state": state }, state);
}

/** The error overlay badge (red), with its message as a tooltip; nothing when null. */
export function errorBadge(error) {
  if (!error) return null;
  return h("span", { class: "error-overlay", title: error.message || "" }, `error: ${error.code}`);
}

/** A progress bar with its percentage as text. */
export function progressBar(progress) {
  if (progress === null || progress === undefined) return h("span", { class: "muted" }, "—");
  const pct = Math.max(0, Math.min(100, Number(progress)));
  const bar = h("span", { class: "progress", role: "progressbar", "aria-valuenow": pct,
    "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": "progress" });
  const fill = h("span", { class: "progress-fill" });
  fill.style.width = `${pct}%`;
  bar.append(fill);
  return h("span", { class: "progress-cell" }, bar, ` ${Math.round(pct)}%`);
}

/** A message line in a view (errors, notes). */
export function notice(text, kind = "info") {
  return h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}
