// One job (SPEC §9 "/jobs/{id}"): spec, steps, reservations, history, the log
// following live, the operations its state allows, and an edit form while it is
// draft, tentative or confirmed (PATCH /v1/jobs/{id}).

import { api } from "./api.js";
import { errorBadge, fmtDuration, fmtJson, fmtTime, h, notice, progressBar, replace, stateBadge }
  from "./dom.js";
import { onEvents, throttled } from "./live.js";
import { allowedFor, editable } from "./ops.js";

const EDIT_FIELDS = [
  ["name", "text"], ["start_at", "time"], ["end_at", "time"], ["preroll", "number"],
  ["postroll", "number"], ["priority", "integer"], ["timeout", "number"],
  ["assets", "list"], ["resources", "list"], ["params", "json"],
];

function table(label, columns, rows) {
  return h("table", { "aria-label": label },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: columns.length,
      class: "muted" }, "none"))));
}

function specList(job) {
  const items = [
    ["workflow", job.workflow], ["priority", String(job.priority)],
    ["params", h("pre", {}, fmtJson(job.params))],
    ["assets", (job.assets || []).join(", ") || "—"],
    ["shared assets", (job.shared_assets || []).join(", ") || "—"],
    ["resources", (job.resources || []).join(", ") || "—"],
    ["pools", (job.pools || []).join(", ") || "—"],
    ["start", fmtTime(job.start_at)], ["end", fmtTime(job.end_at)],
    ["preroll", `${job.preroll} s`], ["postroll", `${job.postroll} s`],
    ["timeout", job.timeout === null ? "—" : `${job.timeout} s`],
    ["lock timeout", job.lock_timeout === null ? "—" : `${job.lock_timeout} s`],
    ["schedule", job.schedule || "—"],
    ["progress", h("span", {}, progressBar(job.progress), " ", job.progress_message || "")],
    ["created", fmtTime(job.created_at)], ["updated", fmtTime(job.updated_at)],
  ];
  return h("dl", { class: "detail-grid", "aria-label": "spec" },
    items.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k }, v)]));
}

function stepRows(job) {
  return (job.steps || []).map((step) => {
    const took = step.started_at && step.ended_at ?
      fmtDuration((new Date(step.ended_at) - new Date(step.started_at)) / 1000) : "—";
    return h("tr", { "data-step": step.name, "data-state": step.state },
      h("td", {}, step.name), h("td", { class: "mono" }, step.action),
      h("td", {}, stateBadge(step.state)), h("td", { class: "num" }, String(step.attempts)),
      h("td", {}, fmtTime(step.started_at)), h("td", {}, fmtTime(step.ended_at)), h("td", {}, took),
      h("td", {}, h("pre", {}, fmtJson(step.outputs))),
      h("td", { class: "error-text" }, step.error ? String(step.error) : ""));
  });
}

function historyRows(job) {
  return (job.history || []).map((entry) => h("tr", { "data-to": entry.to || "" },
    h("td", {}, fmtTime(entry.at)), h("td", {}, entry.from || "(new)"),
    h("td", {}, entry.to || "—"), h("td", {}, entry.cause), h("td", {}, entry.actor)));
}

function reservationRows(job) {
  return (job.reservations || []).map((r) => h("tr", { "data-resource": r.resource },
    h("td", {}, r.resource), h("td", {}, r.pool || "—"), h("td", {}, fmtTime(r.start)),
    h("td", {}, fmtTime(r.end))));
}

/** The value an edit field shows for ``job``. */
function fieldValue(job, key, kind) {
  const value = job[key];
  if (kind === "list") return (value || []).join(", ");
  if (kind === "json") return JSON.stringify(value || {}, null, 1);
  if (value === null || value === undefined) return "";
  return String(value);
}

/** Parse one edit field; throws naming the field. */
function parseField(key, kind, text) {
  const value = text.trim();
  if (kind === "list") return value ? value.split(",").map((v) => v.trim()).filter(Boolean) : [];
  if (kind === "json") {
    try {
      return JSON.parse(value || "{}");
    } catch (error) {
      throw new Error(`${key}: not JSON (${error.message})`);
    }
  }
  if (kind === "number" || kind === "integer") {
    if (value === "") return null;
    const number = Number(value);
    if (!Number.isFinite(number) || (kind === "integer" && !Number.isInteger(number))) {
      throw new Error(`${key}: not ${kind === "integer" ? "an integer" : "a number"}`);
    }
    return number;
  }
  return value === "" ? null : value;
}

class JobPage {
  constructor(root, jobId, roleName) {
    this.root = root;
    this.id = jobId;
    this.role = roleName;
    this.lastSeq = 0;
    this.reload = throttled(() => this.load(), 250);
    this.moreLog = throttled(() => this.loadLog(), 250);
  }

  async mount() {
    this.section = h("section", { class: "job-detail", "data-job-id": this.id });
    this.message = h("div", { "aria-live": "polite" });
    this.log = h("div", { class: "log", role: "log", "aria-label": "log" });
    replace(this.root, this.section);
    onEvents((batch) => this.onEvents(batch));
    await this.load();
    await this.loadLog();
  }

  async load() {
    let job;
    try {
      job = await api(`/v1/jobs/${this.id}`);
    } catch (error) {
      replace(this.section, h("h1", {}, `job ${this.id}`), notice(error.message, "error"));
      return;
    }
    this.job = job;
    this.render(job);
  }

  render(job) {
    this.section.dataset.state = job.state;
    const editing = Boolean(this.form) && editable(job, this.role);
    replace(this.section,
      h("h1", {}, `job ${job.id} · `, h("span", { class: "job-name" }, job.name)),
      h("p", {}, stateBadge(job.state), errorBadge(job.error),
        job.error ? h("span", { class: "error-text" }, ` ${job.error.message}`) : null),
      this.operations(job), this.message,
      h("h2", {}, "spec"), specList(job),
      editing ? this.form : (editable(job, this.role) ? h("button", { type: "button",
        onclick: () => this.openEdit(job) }, "edit") : null),
      h("h2", {}, "steps"),
      table("steps", ["step", "action", "state", "attempts", "started", "ended", "took",
        "outputs", "error"], stepRows(job)),
      h("h2", {}, "reservations"),
      table("reservations", ["resource", "pool", "from", "to"], reservationRows(job)),
      h("h2", {}, "history"),
      table("history", ["at", "from", "to", "cause", "actor"], historyRows(job)),
      h("h2", {}, "log"), this.log);
  }

  operations(job) {
    const ops = allowedFor(job, this.role);
    return h("div", { class: "ops", role: "toolbar", "aria-label": "operations" },
      ops.map((op) => h("button", { type: "button", class: "op", "data-op": op,
        onclick: () => this.operate(op) }, op)));
  }

  async operate(op) {
    try {
      if (op === "delete") {
        await api(`/v1/jobs/${this.id}`, { method: "DELETE" });
        location.assign("/");
        return;
      }
      const result = await api(`/v1/jobs/${this.id}/${op}`, { method: "POST" });
      if (op === "resubmit" && result) {
        location.assign(`/jobs/${result.id}`);
        return;
      }
      replace(this.message, notice(`${op}: done`));
    } catch (error) {
      replace(this.message, notice(`${op}: ${error.message}`, "error"));
    }
    await this.load();
  }

  openEdit(job) {
    const inputs = {};
    const rows = EDIT_FIELDS.map(([key, kind]) => {
      const id = `edit-${key}`;
      const input = kind === "json" ?
        h("textarea", { id, name: key }, fieldValue(job, key, kind)) :
        h("input", { id, name: key, value: fieldValue(job, key, kind),
          placeholder: kind === "time" ? "2026-12-01T20:00:00Z" : "" });
      inputs[key] = [kind, input, input.value];
      return [h("label", { for: id }, key.replace("_", " ")), input];
    });
    this.form = h("form", { class: "edit", "aria-label": "edit job" }, rows,
      h("span"), h("span", {}, h("button", { type: "submit" }, "save"), " ",
        h("button", { type: "button", onclick: () => { this.form = null; this.render(this.job); } },
          "discard")));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save(inputs);
    });
    this.render(job);
    this.form.querySelector("input").focus();
  }

  async save(inputs) {
    const body = {};
    try {
      for (const [key, [kind, input, original]] of Object.entries(inputs)) {
        if (input.value !== original) body[key] = parseField(key, kind, input.value);
      }
    } catch (error) {
      replace(this.message, notice(error.message, "error"));
      return;
    }
    try {
      this.job = await api(`/v1/jobs/${this.id}`, { method: "PATCH", body });
      this.form = null;
      replace(this.message, notice(Object.keys(body).length ? "saved" : "nothing changed"));
      this.render(this.job);
    } catch (error) {
      replace(this.message, notice(`edit refused: ${error.message}`, "error"));
    }
  }

  async loadLog() {
    for (;;) {
      let page;
      try {
        page = await api(`/v1/jobs/${this.id}/log?after=${this.lastSeq}&limit=1000`);
      } catch (error) {
        return;
      }
      const fragment = document.createDocumentFragment();
      for (const line of page.items || []) {
        this.lastSeq = Math.max(this.lastSeq, line.seq);
        fragment.append(h("div", { class: "log-line", "data-seq": line.seq },
          h("span", { class: "muted" }, `${fmtTime(line.at)} `),
          h("span", { class: `lvl-${line.level}` }, `${line.level} `),
          line.step ? h("span", { class: "muted" }, `[${line.step}] `) : null, line.message));
      }
      const atBottom = this.log.scrollTop + this.log.clientHeight >= this.log.scrollHeight - 4;
      this.log.append(fragment);
      if (atBottom) this.log.scrollTop = this.log.scrollHeight;
      if (!page.next_cursor) return;
    }
  }

  onEvents(batch) {
    const mine = batch.filter((e) => e.job_id === this.id || e.kind === "reconnected");
    if (!mine.length) return;
    if (mine.some((e) => e.kind !== "log")) this.reload();
    this.moreLog();
  }
}

export function mount(root, { jobId, role }) {
  return new JobPage(root, jobId, role).mount();
}
