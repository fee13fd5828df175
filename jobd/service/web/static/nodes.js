// The nodes page (SPEC §9, §10): the cluster's nodes from GET /v1/nodes (name, tags, state,
// last renewal, running jobs, workers). A daemon on SQLite lists itself alone; an older
// daemon without the route is shown as a single node.

import { api, ApiError, whoami } from "./api.js";
import { fmtDuration, fmtTime, h, notice, replace } from "./dom.js";
import { onEvents, throttled } from "./live.js";

const COLUMNS = ["node", "state", "tags", "workers", "running jobs", "last renewal", "lease",
  "started", "host", "api"];

/** Seconds since ``iso`` (the browser's clock against the database server's: the page
 * assumes they agree, as NTP makes them), or null. */
function age(iso) {
  const at = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(at) ? null : Math.max(0, (Date.now() - at) / 1000);
}

/** "up", or "up, lease overdue" when its renewal is older than its lease (it may be about to
 * be taken over: the database decides, and the next read says). */
function stateText(node) {
  const since = age(node.renewed_at);
  if (node.state === "up" && node.lease && since !== null && since > node.lease) {
    return "up, lease overdue";
  }
  return node.state || "—";
}

function runningCell(jobs) {
  if (!Array.isArray(jobs)) return h("td", { class: "num" }, "—");
  const shown = jobs.slice(0, 8).map((id) => [h("a", { href: `/jobs/${id}` }, String(id)), " "]);
  return h("td", { class: "running", "data-count": jobs.length },
    h("strong", {}, String(jobs.length)), jobs.length ? ": " : "", shown,
    jobs.length > shown.length ? `+${jobs.length - shown.length}` : "");
}

function nodeRow(node) {
  return h("tr", { "data-node": node.name, "data-node-state": node.state || "",
    "data-lease": node.lease || "", "data-renewed": node.renewed_at || "" },
    h("th", { scope: "row" }, node.name),
    h("td", { class: "node-state" }, h("span", { class: "state", "data-state": node.state },
      stateText(node))),
    h("td", {}, (node.tags || []).join(", ") || "—"),
    h("td", { class: "num" }, String(node.workers ?? "—")),
    runningCell(node.running_jobs),
    h("td", {}, fmtTime(node.renewed_at), " ",
      h("span", { class: "muted renewed" },
        node.renewed_at ? `(${fmtDuration(age(node.renewed_at))} ago)` : "")),
    h("td", {}, node.lease ? `${node.lease} s` : "—"),
    h("td", {}, fmtTime(node.started_at)),
    h("td", {}, [node.host, node.pid ? `pid ${node.pid}` : null].filter(Boolean).join(", ") || "—"),
    h("td", {}, node.api || "—"));
}

function summary(nodes) {
  if (nodes.length === 1 && !nodes[0].lease) {
    return h("p", { class: "single-node" },
      "single node: this daemon keeps its jobs in SQLite; a cluster shares a PostgreSQL database.");
  }
  const count = (state) => nodes.filter((n) => n.state === state).length;
  return h("p", { class: "nodes-summary" },
    `${nodes.length} node${nodes.length === 1 ? "" : "s"}: ${count("up")} up, ` +
    `${count("lost")} lost, ${count("left")} left`);
}

async function read(body) {
  let data;
  try {
    data = await api("/v1/nodes");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      const info = await whoami();
      replace(body, h("p", { class: "single-node" },
        `single node: this daemon (jobd ${info.version || ""}) has no cluster to show.`));
      return;
    }
    replace(body, notice(error.message, "error"));
    return;
  }
  const nodes = data.items || [];
  replace(body, summary(nodes), h("table", { "aria-label": "nodes" },
    h("thead", {}, h("tr", {}, COLUMNS.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, nodes.map(nodeRow))));
}

/** Count the ages up and say which leases are overdue; true when one is (then the page
 * re-reads, at most every 2 s, until the database says what became of that node). */
function tick(body) {
  let overdue = false;
  for (const tr of body.querySelectorAll("tr[data-node]")) {
    const node = { state: tr.dataset.nodeState, lease: Number(tr.dataset.lease) || null,
      renewed_at: tr.dataset.renewed || null };
    const text = stateText(node);
    overdue ||= text !== node.state;
    const span = tr.querySelector(".node-state .state");
    if (span.textContent !== text) span.textContent = text;
    const renewed = tr.querySelector(".renewed");
    if (node.renewed_at) renewed.textContent = `(${fmtDuration(age(node.renewed_at))} ago)`;
  }
  return overdue;
}

export async function mount(root) {
  const body = h("div");
  replace(root, h("h1", {}, "nodes"), body);
  const refresh = throttled(() => read(body), 2000);
  // Jobs starting and ending change the running jobs; a takeover moves them. A lease running
  // out is no event: the ages below count up on the page, and say when a lease is overdue.
  onEvents((batch) => { if (batch.some((e) => e.kind === "state" || e.kind === "reconnected")) refresh(); });
  setInterval(() => {
    if (tick(body)) refresh();
  }, 1000);
  await read(body);
}
