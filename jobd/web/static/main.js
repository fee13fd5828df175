// The page's entry point: authenticate, start the live feed, then mount the view
// that the address names. Every view is a module with ``mount(root, params)``.

import { api, redeemSecret, role, whoami } from "./api.js";
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

async function start() {
  markCurrent();
  const view = document.getElementById("view");
  const route = ROUTES.find(([pattern]) => pattern.test(location.pathname));
  if (!route) {
    replace(view, notice(`no such page: ${location.pathname}`, "error"));
    return;
  }
  await redeemSecret();
  // A first authenticated call: over TCP without a token this asks for it, once.
  await api("/v1/queue");
  const info = await showWho();
  const jobId = route[2] === "job" ? Number(route[0].exec(location.pathname)[1]) : null;
  follow(jobId === null ? "/v1/events" : `/v1/events?job=${jobId}`);
  // Subscribed before the view reads its data, so no change falls in between.
  await Promise.race([firstConnect, new Promise((resolve) => setTimeout(resolve, 3000))]);
  const module = await route[1]();
  document.body.dataset.page = route[2];
  await module.mount(view, { jobId, role: role(info), health: info });
}

start().catch((error) => {
  console.error(error);
  replace(document.getElementById("view"),
    notice(`the page could not start: ${error.message}`, "error"));
});

