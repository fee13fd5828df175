// The jobs page (SPEC §9 "/"): newest first, paged by the server, the list
// filters, selection of rows or of all that match, batch operations with a
// per-job report of refusals; rows follow the event stream.

import { api } from "./api.js";
import { errorBadge, fmtTime, h, notice, progressBar, replace, stateBadge } from "./dom.js";
import { onEvents, throttled } from "./live.js";
import { allowedFor, allowedForStates, STATES } from "./ops.js";

const PAGE_SIZE = 50;
const ROWS_PER_FRAME = 10;
const TEXT_FILTERS = ["workflow", "asset", "resource", "since", "until", "search"];

/** The filters as the address bar has them. */
function readFilters() {
  const query = new URLSearchParams(location.search);
  const filters = { state: query.getAll("state").filter((s) => STATES.includes(s)) };
  for (const key of TEXT_FILTERS) filters[key] = query.get(key) || "";
  return filters;
}

function filterQuery(filters) {
  const query = new URLSearchParams();
  for (const state of filters.state) query.append("state", state);
  for (const key of TEXT_FILTERS) if (filters[key]) query.set(key, filters[key]);
  return query;
}

/** The ``filter`` body of ``POST /v1/batch/{operation}``: the same keys as the list's query. */
function filterBody(filters) {
  const body = {};
  if (filters.state.length) body.state = filters.state;
  for (const key of TEXT_FILTERS) if (filters[key]) body[key] = filters[key];
  return body;
}

class JobsPage {
  constructor(root, roleName) {
    this.root = root;
    this.role = roleName;
    this.filters = readFilters();
    this.cursors = [null]; // cursor of each page seen; the last is the current one
    this.rows = new Map(); // id -> {job, tr}
    this.selected = new Set();
    this.allMatching = false;
    this.refresh = throttled(() => this.load(true), 1000);
  }

  mount() {
    this.form = this.filterForm();
    this.batch = h("div", { class: "batch", role: "toolbar", "aria-label": "batch operations" });
    this.report = h("div", { class: "report-area", "aria-live": "polite" });
    this.tbody = h("tbody");
    this.pager = h("div", { class: "pager" });
    this.message = h("div");
    const headCheck = h("input", { type: "checkbox", "aria-label": "select all jobs on this page",
      onchange: (e) => this.selectPage(e.target.checked) });
    this.headCheck = headCheck;
    const table = h("table", { class: "jobs", "aria-label": "jobs" },
      h("thead", {}, h("tr", {}, h("th", {}, headCheck), ...["id", "name", "workflow", "state",
        "progress", "start", "end", "assets", "resources"].map((t) => h("th", { scope: "col" }, t)))),
      this.tbody);
    replace(this.root, h("h1", {}, "jobs"), this.form, this.batch, this.report, this.message,
      table, this.pager);
    onEvents((batch) => this.onEvents(batch));
    return this.load();
  }

  filterForm() {
    const states = h("select", { id: "f-state", name: "state", multiple: true },
      STATES.map((s) => h("option", { value: s, selected: this.filters.state.includes(s) }, s)));
    const fields = TEXT_FILTERS.map((key) => h("label", {}, key,
      h("input", { name: key, value: this.filters[key], placeholder: placeholder(key) })));
    const form = h("form", { class: "filters", role: "search", "aria-label": "filters" },
      h("label", {}, "state", states), ...fields,
      h("button", { type: "submit" }, "apply filters"),
      h("button", { type: "button", onclick: () => this.setFilters(readEmpty()) }, "clear filters"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const filters = { state: data.getAll("state") };
      for (const key of TEXT_FILTERS) filters[key] = String(data.get(key) || "").trim();
      this.setFilters(filters);
    });
    return form;
  }

  setFilters(filters) {
    this.filters = filters;
    const query = filterQuery(filters).toString();
    history.pushState(null, "", query ? `/?${query}` : "/");
    this.cursors = [null];
    this.clearSelection();
    this.syncForm(filters);
    return this.load();
  }

  syncForm(filters) {
    for (const el of this.form.elements) {
      if (el.name === "state") for (const o of el.options) o.selected = filters.state.includes(o.value);
      else if (TEXT_FILTERS.includes(el.name)) el.value = filters[el.name];
    }
  }

  /** Read the page the filters and cursor name; ``chunked`` for a re-read that events asked
   * for (see renderRows). */
  async load(chunked = false) {
    const query = filterQuery(this.filters);
    query.set("limit", String(PAGE_SIZE));
    const cursor = this.cursors[this.cursors.length - 1];
    if (cursor !== null) query.set("cursor", String(cursor));
    let page;
    try {
      page = await api(`/v1/jobs?${query}`);
    } catch (error) {
      replace(this.message, notice(error.message, "error"));
      return;
    }
    replace(this.message);
    this.nextCursor = page.next_cursor;
    this.renderRows(page.items, chunked);
    this.renderPager();
    this.renderBatch();
  }

  /** Show ``jobs``; a row whose content is unchanged is kept, not built again. A re-read
   * (``chunked``: rows are on screen already) puts the rows in ROWS_PER_FRAME at a time, one
   * step per animation frame: under 1,000 events/s the first page is new every second, and
   * laying out 50 new rows in one frame made the longest main-thread tasks. */
  renderRows(jobs, chunked = false) {
    const before = this.rows;
    this.rows = new Map();
    const trs = [];
    for (const job of jobs) {
      const entry = this.entry(job, before.get(job.id));
      this.rows.set(job.id, entry);
      trs.push(entry.tr);
    }
    if (!jobs.length) trs.push(h("tr", {}, h("td", { colspan: 10, class: "muted" }, "no jobs match")));
    this.headCheck.checked = jobs.length > 0 && jobs.every((j) => this.selected.has(j.id));
    const generation = (this.generation = (this.generation || 0) + 1);
    if (!chunked) {
      this.tbody.replaceChildren(...trs);
      // For bench/web.py: when the first screen of rows is in the page (ms since navigation).
      if (!performance.getEntriesByName("jobd:first-screen").length) {
        performance.mark("jobd:first-screen");
      }
      return;
    }
    const wanted = new Set(trs);
    let at = 0;
    const step = () => {
      if (generation !== this.generation) return; // a newer read took over
      for (const end = Math.min(at + ROWS_PER_FRAME, trs.length); at < end; at += 1) {
        const current = this.tbody.children[at];
        if (current === trs[at]) continue;
        if (current && !wanted.has(current)) current.replaceWith(trs[at]);
        else this.tbody.insertBefore(trs[at], current || null);
      }
      if (at < trs.length) { requestAnimationFrame(step); return; }
      while (this.tbody.children.length > trs.length) this.tbody.lastElementChild.remove();
    };
    step();
  }

  /** The row of ``job``: ``old``'s when it shows the same, else a new one. */
  entry(job, old) {
    const sig = this.signature(job);
    if (old && old.sig === sig) return { job, tr: old.tr, sig };
    return { job, tr: this.row(job), sig };
  }

  /** Everything a row shows, as one string. */
  signature(job) {
    const checked = this.allMatching || this.selected.has(job.id);
    return JSON.stringify([checked, this.allMatching, job.state, job.progress, job.error,
      job.name, job.start_at, job.end_at, job.assets, job.shared_assets, job.reservations,
      job.resources, job.pools]);
  }

  row(job) {
    const checked = this.allMatching || this.selected.has(job.id);
    const check = h("input", { type: "checkbox", "aria-label": `select job ${job.id}`,
      checked, disabled: this.allMatching, onchange: (e) => this.select(job.id, e.target.checked) });
    const link = `/jobs/${job.id}`;
    return h("tr", { "data-job-id": job.id, "data-state": job.state, "aria-selected": checked },
      h("td", {}, check),
      h("td", { class: "num" }, h("a", { href: link }, String(job.id))),
      h("td", {}, h("a", { href: link, class: "job-name" }, job.name)),
      h("td", {}, job.workflow),
      h("td", { class: "state-cell" }, stateBadge(job.state), errorBadge(job.error)),
      h("td", { class: "progress-td" }, progressBar(job.progress)),
      h("td", {}, fmtTime(job.start_at)),
      h("td", {}, fmtTime(job.end_at)),
      h("td", {}, (job.assets || []).concat(job.shared_assets || []).join(", ")),
      h("td", {}, (job.reservations || []).map((r) => r.resource)
        .concat(job.resources || [], (job.pools || []).map((p) => `pool ${p}`))
        .filter(unique).join(", ")));
  }

  renderPager() {
    const page = this.cursors.length;
    replace(this.pager,
      h("button", { type: "button", disabled: page === 1, onclick: () => this.page(-1) }, "newer"),
      h("span", {}, `page ${page}`),
      h("button", { type: "button", disabled: !this.nextCursor, onclick: () => this.page(1) },
        "older"));
  }

  page(step) {
    if (step > 0 && this.nextCursor) this.cursors.push(this.nextCursor);
    if (step < 0 && this.cursors.length > 1) this.cursors.pop();
    return this.load();
  }

  select(id, on) {
    if (on) this.selected.add(id);
    else this.selected.delete(id);
    const entry = this.rows.get(id);
    if (entry) {
      entry.tr.setAttribute("aria-selected", String(on));
      entry.sig = null; // its checkbox was changed in place: build it afresh next time
    }
    this.renderBatch();
  }

  selectPage(on) {
    for (const id of this.rows.keys()) {
      this.select(id, on);
      this.rows.get(id).tr.querySelector("input[type=checkbox]").checked = on;
    }
  }

  clearSelection() {
    this.selected.clear();
    this.allMatching = false;
  }

  setAllMatching(on) {
    this.allMatching = on;
    if (on) this.selected.clear();
    this.renderRows([...this.rows.values()].map((r) => r.job));
    this.renderBatch();
  }

  /** Operations offered: for selected rows, those allowed for at least one of them; for all
   * that match, those allowed in at least one of the filtered states (all states if none). */
  offered() {
    if (this.allMatching) {
      return allowedForStates(this.filters.state.length ? this.filters.state : STATES, this.role);
    }
    const ops = new Set();
    for (const id of this.selected) {
      const entry = this.rows.get(id);
      if (entry) for (const op of allowedFor(entry.job, this.role)) ops.add(op);
      else ops.add("*");
    }
    if (ops.has("*")) return allowedForStates(STATES, this.role);
    return [...ops];
  }

  renderBatch() {
    const count = this.allMatching ? "all jobs that match the filter" :
      `${this.selected.size} selected`;
    // "All that match" needs a filter: the server refuses to act on every job at once.
    const filtered = Object.keys(filterBody(this.filters)).length > 0;
    const all = h("label", { title: filtered ? "" : "set a filter first" },
      h("input", { type: "checkbox", checked: this.allMatching, disabled: !filtered,
        onchange: (e) => this.setAllMatching(e.target.checked) }), " all that match the filter");
    const ops = (this.allMatching || this.selected.size) ? this.offered() : [];
    const buttons = ops.map((op) => h("button", { type: "button", class: "op", "data-op": op,
      onclick: () => this.confirmBatch(op) }, op));
    replace(this.batch, h("span", { class: "count" }, count), all, ...buttons,
      this.selected.size ? h("button", { type: "button", onclick: () => {
        this.clearSelection(); this.renderRows([...this.rows.values()].map((r) => r.job));
        this.renderBatch();
      } }, "clear selection") : null);
  }

  confirmBatch(op) {
    const target = this.allMatching ? "every job that matches the filter" :
      `${this.selected.size} selected job${this.selected.size === 1 ? "" : "s"}`;
    replace(this.report, h("div", { class: "report", role: "alertdialog",
      "aria-label": "confirm batch operation" },
      h("p", {}, `${op} ${target}?`),
      h("button", { type: "button", class: "op", onclick: () => this.runBatch(op) },
        `yes, ${op}`),
      " ",
      h("button", { type: "button", onclick: () => replace(this.report) }, "no")));
    this.report.querySelector("button").focus();
  }

  async runBatch(op) {
    const body = this.allMatching ? { filter: filterBody(this.filters) } :
      { ids: [...this.selected].sort((a, b) => a - b) };
    replace(this.report, notice(`${op}: working…`));
    let result;
    try {
      result = await api(`/v1/batch/${encodeURIComponent(op)}`, { method: "POST", body });
    } catch (error) {
      replace(this.report, h("div", { class: "report" }, notice(`${op}: ${error.message}`, "error")));
      return;
    }
    this.showReport(op, result);
    this.clearSelection();
    await this.load();
  }

  showReport(op, result) {
    const done = result.done || [];
    const refused = result.refused || [];
    replace(this.report, h("div", { class: "report", role: "status", "aria-label": "batch report",
      "data-op": op },
      h("p", {}, `${op}: ${done.length} done, ${refused.length} refused`),
      refused.length ? h("ul", { class: "refused" }, refused.map((item) =>
        h("li", { "data-job-id": item.id }, `job ${item.id}: ${refusal(item.error)}`))) : null,
      h("button", { type: "button", onclick: () => replace(this.report) }, "dismiss")));
  }

  onEvents(batch) {
    let reread = false;
    let selectedChanged = false;
    const dirty = new Set();
    for (const event of batch) {
      if (event.kind === "reconnected" || event.kind === "deleted") { reread = true; continue; }
      const entry = this.rows.get(event.job_id);
      if (!entry) {
        // A new job (or one that now matches) belongs on the first page.
        if (event.kind === "state" && this.cursors.length === 1) reread = true;
        continue;
      }
      dirty.add(entry);
      const stateChanged = this.apply(entry.job, event);
      if (stateChanged && this.filters.state.length) reread = true;
      if (stateChanged && this.selected.has(entry.job.id)) selectedChanged = true;
    }
    // One patch per changed row per frame, whatever the number of its events: only its
    // state and progress cells change (an event changes nothing else a row shows).
    for (const entry of dirty) this.patch(entry);
    if (reread) this.refresh();
    // The operations offered follow the selected jobs' states; nothing else changes them.
    else if (selectedChanged) this.renderBatch();
  }

  patch(entry) {
    const { job, tr } = entry;
    const shown = this.signature(job);
    if (shown === entry.sig) return;
    entry.sig = shown;
    tr.dataset.state = job.state;
    replace(tr.querySelector(".state-cell"), stateBadge(job.state), errorBadge(job.error));
    replace(tr.querySelector(".progress-td"), progressBar(job.progress));
  }

  /** Fold one event into a listed job; true when its state changed. */
  apply(job, event) {
    if (event.kind === "state" && event.to) {
      job.state = event.to;
      return true;
    }
    if (event.kind === "progress" && event.data) job.progress = event.data.progress;
    else if (event.kind === "error") job.error = event.data || null;
    return false;
  }
}

function refusal(error) {
  if (!error) return "refused";
  if (typeof error === "string") return error;
  return error.message || error.code || JSON.stringify(error);
}

function unique(value, index, list) {
  return list.indexOf(value) === index;
}

function placeholder(key) {
  return { since: "2026-12-01T00:00Z", until: "2026-12-02T00:00Z", search: "in the name" }[key] || "";
}

function readEmpty() {
  const filters = { state: [] };
  for (const key of TEXT_FILTERS) filters[key] = "";
  return filters;
}

export function mount(root, { role }) {
  const view = new JobsPage(root, role);
  window.addEventListener("popstate", () => {
    view.filters = readFilters();
    view.syncForm(view.filters);
    view.cursors = [null];
    view.load();
  });
  return view.mount();
}
