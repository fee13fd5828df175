// The schedules page (SPEC §9): next and last firings, missed and skipped ones,
// and run/pause/resume (POST /v1/schedules/{name}/{op}) for operators.

import { api, roleAllows } from "./api.js";
import { fmtTime, h, notice, replace } from "./dom.js";
import { onEvents, throttled } from "./live.js";

function controls(schedule, roleName, act) {
  if (!roleAllows(roleName, "schedule")) return null;
  const ops = ["run", schedule.paused ? "resume" : "pause"];
  return ops.map((op) => h("button", { type: "button", class: "op", "data-op": op,
    onclick: () => act(schedule.name, op) }, op));
}

function scheduleRow(schedule, roleName, act) {
  const when = schedule.cron ? `cron ${schedule.cron}` :
    schedule.interval ? `every ${schedule.interval} s` : "—";
  const state = schedule.paused ? "paused" : schedule.enabled === false ? "disabled" : "active";
  return h("tr", { "data-schedule": schedule.name, "data-schedule-state": state },
    h("td", {}, schedule.name), h("td", {}, schedule.workflow), h("td", {}, when),
    h("td", {}, schedule.timezone || "—"),
    h("td", {}, schedule.paused ? `paused since ${fmtTime(schedule.paused_at)}` : state),
    h("td", {}, fmtTime(schedule.next_fire_at)), h("td", {}, fmtTime(schedule.last_fire_at)),
    h("td", {}, schedule.last_job_id ? h("a", { href: `/jobs/${schedule.last_job_id}` },
      `job ${schedule.last_job_id}`) : "—"),
    h("td", { class: "num" }, String(schedule.missed ?? 0)),
    h("td", { class: "num" }, String(schedule.skipped ?? 0)),
    h("td", {}, controls(schedule, roleName, act)));
}

export async function mount(root, { role }) {
  const body = h("tbody");
  const message = h("div", { "aria-live": "polite" });
  const table = h("table", { "aria-label": "schedules" }, h("thead", {}, h("tr", {},
    ["name", "workflow", "when", "zone", "state", "next", "last", "last job", "missed", "skipped",
      ""].map((t) => h("th", { scope: "col" }, t)))), body);
  replace(root, h("h1", {}, "schedules"), message, table);
  const load = async () => {
    const data = await api("/v1/schedules");
    const items = data.items || [];
    replace(body, items.length ? items.map((s) => scheduleRow(s, role, act)) :
      h("tr", {}, h("td", { colspan: 11, class: "muted" }, "no schedules configured")));
  };
  const act = async (name, op) => {
    try {
      const result = await api(`/v1/schedules/${encodeURIComponent(name)}/${op}`, { method: "POST" });
      const job = op === "run" && result ? result.id : null;
      replace(message, job ? h("p", { class: "notice", role: "status" }, `${name}: fired, `,
        h("a", { href: `/jobs/${job}` }, `job ${job}`)) : notice(`${name}: ${op} done`));
    } catch (error) {
      replace(message, notice(`${name}: ${op}: ${error.message}`, "error"));
    }
    await load();
  };
  const refresh = throttled(load, 1000);
  onEvents((batch) => { if (batch.some((e) => e.kind === "reconnected" || e.from === null)) refresh(); });
  try {
    await load();
  } catch (error) {
    replace(message, notice(error.message, "error"));
  }
}
