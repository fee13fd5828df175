// The nodes page (SPEC §9, §10): the cluster's nodes; a daemon without GET /v1/nodes
// (SQLite, one node) is shown as a single node.

import { api, ApiError, whoami } from "./api.js";
import { fmtTime, h, notice, replace } from "./dom.js";
import { onEvents, throttled } from "./live.js";

function nodeRow(node) {
  const running = Array.isArray(node.running_jobs) ? node.running_jobs.length :
    (node.running ?? node.running_jobs ?? "—");
  return h("tr", { "data-node": node.name, "data-node-state": node.state || "" },
    h("td", {}, node.name), h("td", {}, (node.tags || []).join(", ") || "—"),
    h("td", {}, node.state || "—"), h("td", {}, fmtTime(node.last_renewal || node.renewed_at)),
    h("td", { class: "num" }, String(running)), h("td", { class: "num" }, String(node.workers ?? "—")));
}

export async function mount(root) {
  const body = h("div");
  replace(root, h("h1", {}, "nodes"), body);
  const load = async () => {
    let data;
    try {
      data = await api("/v1/nodes");
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        const info = await whoami();
        replace(body, h("p", { class: "single-node" },
          `single node: this daemon (jobd ${info.version || ""}) keeps its jobs in SQLite; ` +
          "there is no cluster to show."));
        return;
      }
      replace(body, notice(error.message, "error"));
      return;
    }
    const nodes = data.items || data.nodes || [];
    replace(body, h("table", { "aria-label": "nodes" },
      h("thead", {}, h("tr", {}, ["node", "tags", "state", "last renewal", "running jobs",
        "workers"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, nodes.map(nodeRow))));
  };
  const refresh = throttled(load, 2000);
  onEvents((batch) => { if (batch.some((e) => e.kind === "reconnected")) refresh(); });
  await load();
}
