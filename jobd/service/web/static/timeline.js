// The timeline (SPEC §9 "/timeline"): resources grouped by pool as rows, their
// bookings as bars in time with preroll and postroll shaded, a line at now,
// hour/day/week zoom; a bar is a link to its job. Bars follow the event stream.

import { api } from "./api.js";
import { fmtTime, h, notice, replace } from "./dom.js";
import { onEvents, throttled } from "./live.js";
import { barLink, draw, hit, pack, rowHeight } from "./bars.js";

const HOUR = 3600 * 1000;
const ZOOMS = {
  hour: { span: HOUR, before: 10 * 60 * 1000, tick: 10 * 60 * 1000 },
  day: { span: 24 * HOUR, before: 2 * HOUR, tick: 2 * HOUR },
  week: { span: 7 * 24 * HOUR, before: 24 * HOUR, tick: 24 * HOUR },
};
const HOLDS = new Set(["tentative", "confirmed", "pending", "queued", "waiting-for-lock",
  "running", "cancel-requested", "paused"]);

/** Resource rows grouped by pool: [[pool title, [resource names]]]. */
function groups(resources, bookings) {
  const byPool = new Map();
  const placed = new Set();
  for (const res of resources) {
    const pool = (res.pools && res.pools[0]) || null;
    const key = pool === null ? "(no pool)" : `pool ${pool}`;
    if (!byPool.has(key)) byPool.set(key, []);
    byPool.get(key).push(res.name);
    placed.add(res.name);
  }
  const stray = [...new Set(bookings.map((b) => b.resource))].filter((r) => !placed.has(r));
  if (stray.length) byPool.set("(not configured)", stray.sort());
  return [...byPool.entries()].sort(([a], [b]) => (a.startsWith("(") - b.startsWith("(")) ||
    a.localeCompare(b));
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function tickLabel(ms, zoom) {
  const d = new Date(ms);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (zoom === "hour") return hm;
  if (zoom === "day") return d.getHours() === 0 ? `${d.getMonth() + 1}/${d.getDate()} ${hm}` : hm;
  return `${["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][d.getDay()]} ${d.getMonth() + 1}/${d.getDate()}`;
}

class Timeline {
  constructor(root) {
    this.root = root;
    const query = new URLSearchParams(location.search);
    this.zoom = ZOOMS[query.get("zoom")] ? query.get("zoom") : "day";
    const at = Date.parse(query.get("from") || "");
    this.from = Number.isNaN(at) ? Date.now() - ZOOMS[this.zoom].before : at;
    this.refresh = throttled(() => this.load(), 1000);
  }

  get to() {
    return this.from + ZOOMS[this.zoom].span;
  }

  async mount() {
    this.controls = h("div", { class: "tl-controls", role: "toolbar", "aria-label": "zoom" });
    this.range = h("span", { class: "muted" });
    this.message = h("div");
    this.grid = h("div", { class: "timeline", "aria-label": "bookings" });
    replace(this.root, h("h1", {}, "timeline"), this.controls, this.message, this.grid);
    this.renderControls();
    onEvents((batch) => this.onEvents(batch));
    setInterval(() => this.placeNow(), 15000);
    // A new width draws again (once per frame however many resize events come).
    let resizing = false;
    window.addEventListener("resize", () => {
      if (resizing || !this.data) return;
      resizing = true;
      requestAnimationFrame(() => { resizing = false; this.render(...this.data); });
    });
    await this.load(true);
  }

  renderControls() {
    const zoomButton = (name) => h("button", { type: "button", "aria-pressed": String(this.zoom === name),
      onclick: () => this.setView(name, Date.now() - ZOOMS[name].before) }, name);
    const span = ZOOMS[this.zoom].span;
    replace(this.controls, ...Object.keys(ZOOMS).map(zoomButton),
      h("button", { type: "button", onclick: () => this.setView(this.zoom, this.from - span / 2) },
        "earlier"),
      h("button", { type: "button", onclick: () => this.setView(this.zoom,
        Date.now() - ZOOMS[this.zoom].before) }, "now"),
      h("button", { type: "button", onclick: () => this.setView(this.zoom, this.from + span / 2) },
        "later"),
      this.range);
    replace(this.range, `${fmtTime(new Date(this.from).toISOString())} – ` +
      `${fmtTime(new Date(this.to).toISOString())}`);
  }

  setView(zoom, from) {
    this.zoom = zoom;
    this.from = from;
    const query = new URLSearchParams({ zoom, from: new Date(from).toISOString() });
    history.replaceState(null, "", `/timeline?${query}`);
    this.renderControls();
    delete this.grid.dataset.loaded;
    return this.load(true);
  }

  /** Read the view's resources and bookings and draw them. A new view (``first``) asks
   * first for the bookings of the rows in sight, draws those, then reads the rest: the
   * screen does not wait for 10,000 bookings it cannot show. */
  async load(first = false) {
    const from = this.from;
    const to = this.to;
    const moved = () => from !== this.from || to !== this.to; // the view moved meanwhile
    try {
      const resources = (await api("/v1/resources")).items || [];
      if (moved()) return;
      const names = groups(resources, []).flatMap(([, members]) => members);
      const inSight = Math.ceil((window.innerHeight - this.grid.getBoundingClientRect().top) /
        rowHeight(1)) + 1;
      if (first && names.length > inSight) {
        const some = await this.bookings(from, to, names.slice(0, inSight));
        if (moved()) return;
        this.show(resources, some, from, to, "first");
      }
      const all = await this.bookings(from, to, null);
      if (moved()) return;
      this.show(resources, all, from, to, "all");
    } catch (error) {
      replace(this.message, notice(error.message, "error"));
    }
  }

  /** ``GET /v1/bookings`` in the compact form (each job once, times as numbers: docs/api.md). */
  async bookings(from, to, resources) {
    const query = new URLSearchParams({ from: new Date(from).toISOString(),
      to: new Date(to).toISOString(), form: "columns" });
    if (resources !== null) query.set("resource", resources.join(","));
    return unpack(await api(`/v1/bookings?${query}`));
  }

  show(resources, bookings, from, to, loaded) {
    replace(this.message);
    // For bench/web.py: data in hand, and building the rows (drawing follows, as rows come
    // into sight), for the first drawing of a view.
    const firstDrawing = !this.grid.dataset.loaded;
    if (firstDrawing) performance.mark("jobd:timeline-fetched");
    this.render(resources, bookings, from, to);
    if (firstDrawing) performance.measure("jobd:timeline-render", "jobd:timeline-fetched");
    if (loaded === "all" && this.grid.dataset.loaded !== "all") {
      performance.mark("jobd:timeline-complete"); // every booking of the view in hand
    }
    this.grid.dataset.loaded = loaded;
  }

  render(resources, bookings, from, to) {
    const byResource = new Map();
    for (const b of bookings) {
      if (!byResource.has(b.resource)) byResource.set(b.resource, []);
      byResource.get(b.resource).push(b);
    }
    const kept = this.keepFocus();
    this.jobs = new Map(bookings.map((b) => [b.job.id, b.job]));
    this.rows = new Map();
    this.link = null;
    this.watchRows();
    this.data = [resources, bookings, from, to];
    const fragment = document.createDocumentFragment();
    fragment.append(this.axis(from, to));
    for (const [title, names] of groups(resources, bookings)) {
      fragment.append(h("div", { class: "tl-row tl-pool", role: "rowgroup" },
        h("div", { class: "tl-label" }, title), h("div", { class: "tl-lane" })));
      for (const name of names) fragment.append(this.lane(name, byResource.get(name) || []));
    }
    this.now = h("div", { class: "now-line", title: "now", "aria-hidden": "true" });
    fragment.append(this.now);
    this.grid.replaceChildren(fragment);
    // Every lane is as wide as the axis's (one layout read; rows are drawn after it).
    const width = Math.max(this.grid.querySelector(".tl-axis .tl-lane").clientWidth, 100);
    this.view = { from, to, pxPerMs: width / (to - from), width };
    kept();
    this.grid.dataset.bookings = String(bookings.length);
    this.grid.dataset.drawn = "0";
    this.grid.dataset.built = this.unbuilt.size ? "some" : "all";
    if (!this.unbuilt.size) this.markPainted();
    this.placeNow();
  }

  axis(from, to) {
    const lane = h("div", { class: "tl-lane" });
    const step = ZOOMS[this.zoom].tick;
    const offset = new Date(from).getTimezoneOffset() * 60000;
    for (let t = Math.ceil((from - offset) / step) * step + offset; t < to; t += step) {
      const tick = h("span", { class: "tl-tick" }, tickLabel(t, this.zoom));
      tick.style.left = `${((t - from) / (to - from)) * 100}%`;
      lane.append(tick);
    }
    return h("div", { class: "tl-row tl-axis" }, h("div", { class: "tl-label" }, "resource"), lane);
  }

  /** A resource's row: its label and a canvas, drawn when the row comes near the screen
   * (10,000 bookings in view draw only the rows one can see). */
  lane(name, bookings) {
    const height = rowHeight(pack(bookings));
    const canvas = h("canvas", { tabindex: bookings.length ? "0" : null,
      "aria-label": `${name}: ${bookings.length} bookings (arrow keys pick one)` });
    const lane = h("div", { class: "tl-lane", role: "group", "aria-label": `bookings of ${name}` },
      canvas);
    const row = h("div", { class: "tl-row tl-res", "data-resource": name,
      "data-bookings": bookings.length }, h("div", { class: "tl-label", title: name }, name), lane);
    row.style.height = `${height}px`;
    const entry = { name, bookings, canvas, lane, height, drawn: false };
    this.rows.set(name, entry);
    if (bookings.length) {
      this.unbuilt.set(row, entry);
      this.observer.observe(row);
      lane.addEventListener("mousemove", (event) => this.hover(entry, event));
      lane.addEventListener("mouseleave", () => this.unhover(entry));
      lane.addEventListener("keydown", (event) => this.key(entry, event));
    }
    return row;
  }

  drawRow(entry) {
    draw(entry.canvas, entry.bookings, this.view, this.view.width, entry.height);
    if (!entry.drawn) {
      entry.drawn = true;
      this.grid.dataset.drawn = String(Number(this.grid.dataset.drawn) + entry.bookings.length);
    }
  }

  /** What has the focus in the grid (a row, a picked bar), given back after a re-read:
   * events re-read the view, which must not take the keyboard's place away. */
  keepFocus() {
    const active = document.activeElement;
    if (!this.rows || !active || !this.grid.contains(active)) return () => {};
    const resource = active.closest(".tl-row") && active.closest(".tl-row").dataset.resource;
    const jobId = this.link && this.link.node === active ? this.link.booking.job.id : null;
    return () => {
      const entry = this.rows.get(resource);
      if (!entry) return;
      const b = jobId === null ? null : entry.bookings.find((x) => x.job.id === jobId);
      (b ? this.showLink(entry, b) : entry.canvas).focus();
    };
  }

  /** The pointer over a bar lays its link over the drawing (click opens the job). */
  hover(entry, event) {
    if (event.target.closest("a.bar")) return;
    const box = entry.canvas.getBoundingClientRect();
    const b = hit(entry.bookings, this.view, event.clientX - box.left, event.clientY - box.top);
    if (b === null) this.unhover(entry);
    else if (!this.link || this.link.booking !== b) this.showLink(entry, b);
  }

  unhover(entry) {
    if (this.link && this.link.entry === entry && document.activeElement !== this.link.node) {
      this.link.node.remove();
      this.link = null;
    }
  }

  showLink(entry, b) {
    if (this.link) this.link.node.remove();
    const node = barLink(b, entry.name, this.view);
    this.link = { entry, booking: b, node };
    entry.lane.append(node);
    return node;
  }

  /** Arrow keys, Home and End pick a row's bars in time order; Escape goes back to the row. */
  key(entry, event) {
    const inView = entry.bookings.filter((b) => b.end >= this.view.from && b.start <= this.view.to);
    if (!inView.length) return;
    const current = this.link && this.link.entry === entry ? inView.indexOf(this.link.booking) : -1;
    const moves = { ArrowRight: current + 1, ArrowDown: current + 1, ArrowLeft: current - 1,
      ArrowUp: current - 1, Home: 0, End: inView.length - 1 };
    if (event.key === "Escape") {
      entry.canvas.focus();
      this.unhover(entry);
      return;
    }
    if (!(event.key in moves)) return;
    event.preventDefault();
    const index = Math.min(Math.max(moves[event.key], 0), inView.length - 1);
    this.showLink(entry, inView[index]).focus();
  }

  /** For bench/web.py: the frame after the first rows were drawn and painted. */
  markPainted() {
    if (this.painted) return;
    this.painted = true;
    requestAnimationFrame(() => setTimeout(() => performance.mark("jobd:timeline-painted")));
  }

  /** Draw the rows that come within 200 px of the viewport. */
  watchRows() {
    if (this.observer) this.observer.disconnect();
    this.unbuilt = new Map();
    this.painted = false;
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const row = entry.isIntersecting && this.unbuilt.get(entry.target);
        if (!row) continue;
        this.unbuilt.delete(entry.target);
        this.observer.unobserve(entry.target);
        this.drawRow(row);
      }
      this.markPainted();
      if (!this.unbuilt.size) this.grid.dataset.built = "all";
    }, { rootMargin: "200px 0px" });
  }

  placeNow() {
    if (!this.now) return;
    const now = Date.now();
    const inside = now >= this.from && now <= this.to;
    this.now.hidden = !inside;
    // The lane area starts after the 180 px label column.
    const fraction = (now - this.from) / (this.to - this.from);
    this.now.style.left = `calc(180px + (100% - 180px) * ${fraction})`;
  }

  onEvents(batch) {
    let reread = false;
    const changed = new Set();
    for (const event of batch) {
      if (event.kind === "reconnected" || event.kind === "deleted") { reread = true; continue; }
      if (event.kind !== "state") continue;
      const job = this.jobs && this.jobs.get(event.job_id);
      // New bookings, released ones and edits change which bars exist: read them again.
      if (!job || event.from === null || !HOLDS.has(event.to) || event.from === event.to) {
        reread = true;
      }
      if (job) { job.state = event.to; changed.add(job); }
    }
    // One redraw per drawn row that shows a changed job, whatever the number of events.
    if (changed.size && this.rows) {
      for (const entry of this.rows.values()) {
        if (entry.drawn && entry.bookings.some((b) => changed.has(b.job))) this.drawRow(entry);
      }
      if (this.link && changed.has(this.link.booking.job)) {
        this.link.node.dataset.state = this.link.booking.job.state;
      }
    }
    if (reread) this.refresh();
  }
}

/** The columns form (docs/api.md) as bookings {job, resource, start, end} (Unix ms); jobs
 * shared, so a change of state is one write. */
function unpack(data) {
  const c = data.jobs;
  const jobs = c.id.map((id, i) => ({ id, name: c.name[i], state: c.state[i],
    startAt: c.start_at[i], endAt: c.end_at[i] }));
  const b = data.bookings;
  return b.job.map((j, i) => ({ job: jobs[j], resource: data.resources[b.resource[i]],
    start: b.start[i], end: b.end[i], lane: 0 }));
}

export function mount(root) {
  return new Timeline(root).mount();
}
