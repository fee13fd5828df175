// The plugins page (SPEC §9): every plugin with its actions, and the broken ones with their error.

import { api } from "./api.js";
import { h, notice, replace } from "./dom.js";

export async function mount(root) {
  let data;
  try {
    data = await api("/v1/plugins");
  } catch (error) {
    replace(root, h("h1", {}, "plugins"), notice(error.message, "error"));
    return;
  }
  const plugins = data.plugins || [];
  const actions = data.actions || [];
  replace(root, h("h1", {}, "plugins"),
    h("table", { "aria-label": "plugins" },
      h("thead", {}, h("tr", {}, ["plugin", "file", "actions", "status"].map((t) =>
        h("th", { scope: "col" }, t)))),
      h("tbody", {}, plugins.map((p) => h("tr", { "data-plugin": p.name,
        "data-broken": String(Boolean(p.error)) },
        h("td", {}, p.name), h("td", { class: "mono" }, p.file || "—"),
        h("td", {}, (p.actions || []).join(", ") || "—"),
        h("td", {}, p.error ? h("span", { class: "error-text" }, `broken: ${p.error}`) : "loaded"))))),
    h("h2", {}, "actions"),
    h("table", { "aria-label": "actions" },
      h("thead", {}, h("tr", {}, ["action", "plugin", "description"].map((t) =>
        h("th", { scope: "col" }, t)))),
      h("tbody", {}, actions.map((a) => h("tr", { "data-action": a.name },
        h("td", { class: "mono" }, a.name), h("td", {}, a.plugin || "—"),
        h("td", {}, a.description || ""))))));
}
