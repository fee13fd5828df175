// The page's entry point: authenticate, start the live feed, then mount the view
// that the address names. Every view is a module with ``mount(root, params)``.

import { api, redeemSecret, resetWho, role, whoami } from "./api.js";
import { notice, replace } from "./dom.js";
import { firstConnect, follow } from "./live.js";

const ROUTES = [
  [/^\/$/, () => import("./jobs.js"), "jobs"],
  [/^\/jobs\/(\d+)$/, () => import("./job.js"), "job"],
  [/^\/timeline$/, () => import("./timeline.js"), "timeline"],
  [/^\/queue$/, () => import("./queue.js"), "queue"],
  [/^\/schedules$/, () => import("./schedules.js"), "schedules"],
  [/^\/plugins$/, () => import("./plugins.js"), "plugins"],
  [/^\/nodes$/, () => import("./nodes.js"), "nodes"],
];

function markCurrent() {
  for (const link of document.querySelectorAll("nav a")) {
    const here = link.getAttribute("href") === location.pathname ||
      (link.getAttribute("href") === "/" && location.pathname.startsWith("/jobs/"));
    if (here) link.setAttribute("aria-current", "page");
  }
}

async function showWho() {
  const info = await whoami();
  const name = info.user || (info.caller && (info.caller.name || info.caller.user)) || "";
  const who = document.getElementById("who");
  who.dataset.role = role(info);
  replace(who, name ? `${name} · ${role(info)}` : role(info));
  return info;
}

/**
 * Make sure the token (if this listener needs one) is there before the view starts:
 * GET /v1/health says who the daemon takes us for; no role means no valid token, so
 * an authenticated call asks for it (once) and we ask again.
 */
async function authenticate() {
  const info = await whoami();
  if (info.caller && info.caller.role) return;
  await api("/v1/queue"); // a 401 here shows the token prompt, then succeeds
  resetWho();
}

async function start() {
  markCurrent();
  const view = document.getElementById("view");
  const route = ROUTES.find(([pattern]) => pattern.test(location.pathname));
  if (!route) {
    replace(view, notice(`no such page: ${location.pathname}`, "error"));
    return;
  }
  const loading = route[1](); // the view's module loads while we authenticate
  await redeemSecret();
  await authenticate();
  const info = await showWho();
  const jobId = route[2] === "job" ? Number(route[0].exec(location.pathname)[1]) : null;
  follow(jobId === null ? "/v1/events" : `/v1/events?job=${jobId}`);
  // Subscribed before the view reads its data, so no change falls in between.
  const [module] = await Promise.all([loading,
    Promise.race([firstConnect, new Promise((resolve) => setTimeout(resolve, 3000))])]);
  document.body.dataset.page = route[2];
  performance.mark("jobd:mount");
  await module.mount(view, { jobId, role: role(info), health: info });
}

start().catch((error) => {
  console.error(error);
  replace(document.getElementById("view"),
    notice(`the page could not start: ${error.message}`, "error"));
});

