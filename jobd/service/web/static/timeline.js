// The timeline (SPEC §9 "/timeline"): resources grouped by pool as rows, their
// bookings as bars in time with preroll and postroll shaded, a line at now,
// hour/day/week zoom; a bar is a link to its job. Bars follow the event stream.

import { api } from "./api.js";
import { fmtTime, h, notice, replace } from "./dom.js";
import { onEvents, throttled } from "./live.js";

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

/** One bar: the booked span, with the preroll and postroll parts shaded; ``pxPerMs`` says
 * whether the name fits inside (it is always the link's accessible name and tooltip). */
function bar(b, from, to, lane, pxPerMs) {
  const start = Date.parse(b.start);
  const end = Date.parse(b.end);
  const s = Math.max(from, start);
  const e = Math.min(to, end);
  const span = to - from;
  const link = document.createElement("a");
  link.className = "bar";
  link.href = `/jobs/${Number(b.job_id)}`;
  link.dataset.jobId = b.job_id;
  link.dataset.state = b.state;
  link.dataset.resource = b.resource;
  link.title = `${b.job_name} (${b.state}) ${fmtTime(b.start)} – ${fmtTime(b.end)}`;
  link.setAttribute("aria-label", String(b.job_name));
  link.style.left = `${((s - from) / span) * 100}%`;
  link.style.width = `${(Math.max(e - s, 0) / span) * 100}%`;
  link.style.top = `${3 + lane * 24}px`;
  const width = Math.max(e - s, 1);
  const windowStart = b.start_at ? Date.parse(b.start_at) : start;
  const windowEnd = b.end_at ? Date.parse(b.end_at) : end;
  const pre = Math.max(0, Math.min(windowStart, e) - s);
  const post = Math.max(0, e - Math.max(windowEnd, s));
  if (pre > 0) link.append(part("pre", pre / width, "preroll"));
  if ((e - s) * pxPerMs >= 24) {
    const label = document.createElement("span");
    label.className = "live-span";
    label.textContent = b.job_name;
    link.append(label);
  }
  if (post > 0) link.append(part("post", post / width, "postroll"));
  return link;
}

function part(cls, fraction, title) {
  const node = document.createElement("span");
  node.className = cls;
  node.title = title;
  node.style.width = `${fraction * 100}%`;
  return node;
}

/** Greedy packing so overlapping bookings of one resource (capacity > 1) sit on sub-lanes. */
function pack(bookings) {
  const ends = [];
  return bookings.sort((a, b) => Date.parse(a.start) - Date.parse(b.start)).map((b) => {
    const start = Date.parse(b.start);
    let lane = ends.findIndex((end) => end <= start);
    if (lane < 0) lane = ends.push(0) - 1;
    ends[lane] = Date.parse(b.end);
    return [b, lane];
  });
}

class Timeline {
  constructor(root) {
    this.root = root;
    const query = new URLSearchParams(location.search);
    this.zoom = ZOOMS[query.get("zoom")] ? query.get("zoom") : "day";
    const at = Date.parse(query.get("from") || "");
    this.from = Number.isNaN(at) ? Date.now() - ZOOMS[this.zoom].before : at;
    this.bars = new Map();
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
    await this.load();
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
    return this.load();
  }

  async load() {
    const from = this.from;
    const to = this.to;
    const query = new URLSearchParams({ from: new Date(from).toISOString(),
      to: new Date(to).toISOString() });
    let resources;
    let bookings;
    try {
      [resources, bookings] = await Promise.all([api("/v1/resources"),
        api(`/v1/bookings?${query}`)]);
    } catch (error) {
      replace(this.message, notice(error.message, "error"));
      return;
    }
    if (from !== this.from || to !== this.to) return; // the view moved meanwhile
    replace(this.message);
    performance.mark("jobd:timeline-fetched");
    this.render(resources.items || [], bookings.items || [], from, to);
    // For bench/web.py: building the bars (the layout that follows counts in the next frame).
    performance.measure("jobd:timeline-render", "jobd:timeline-fetched");
    if (!this.unbuilt.size) this.markPainted();
  }

  render(resources, bookings, from, to) {
    const byResource = new Map();
    for (const b of bookings) {
      if (!byResource.has(b.resource)) byResource.set(b.resource, []);
      byResource.get(b.resource).push(b);
    }
    this.bars = new Map();
    this.bookingsOf = new Map();
    this.watchRows();
    this.pxPerMs = Math.max(this.grid.clientWidth - 180, 100) / (to - from);
    const fragment = document.createDocumentFragment();
    fragment.append(this.axis(from, to));
    for (const [title, names] of groups(resources, bookings)) {
      fragment.append(h("div", { class: "tl-row tl-pool", role: "rowgroup" },
        h("div", { class: "tl-label" }, title), h("div", { class: "tl-lane" })));
      for (const name of names) fragment.append(this.lane(name, byResource.get(name) || [], from, to));
    }
    this.now = h("div", { class: "now-line", title: "now", "aria-hidden": "true" });
    fragment.append(this.now);
    this.grid.replaceChildren(fragment);
    this.grid.dataset.bookings = String(bookings.length);
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

  /** A resource's row. Its bars are built when it comes near the screen: a timeline of
   * 10,000 bookings lays out only the rows one can see. */
  lane(name, bookings, from, to) {
    const lane = h("div", { class: "tl-lane" });
    const packed = pack(bookings);
    const lanes = packed.reduce((most, [, index]) => Math.max(most, index + 1), 1);
    for (const [b] of packed) {
      if (!this.bookingsOf.has(b.job_id)) this.bookingsOf.set(b.job_id, []);
      this.bookingsOf.get(b.job_id).push(b);
    }
    const row = h("div", { class: "tl-row tl-res", "data-resource": name },
      h("div", { class: "tl-label", title: name }, name), lane);
    row.style.height = `${6 + lanes * 24}px`;
    if (packed.length) {
      this.unbuilt.set(row, () => {
        const fragment = document.createDocumentFragment();
        for (const [b, index] of packed) {
          const node = bar(b, from, to, index, this.pxPerMs);
          fragment.append(node);
          if (!this.bars.has(b.job_id)) this.bars.set(b.job_id, []);
          this.bars.get(b.job_id).push(node);
        }
        lane.append(fragment);
      });
      this.observer.observe(row);
    }
    return row;
  }

  /** For bench/web.py: the frame after the first bars were laid out and painted. */
  markPainted() {
    if (this.painted) return;
    this.painted = true;
    requestAnimationFrame(() => setTimeout(() => performance.mark("jobd:timeline-painted")));
  }

  /** Build the bars of rows that come within a screen of the viewport. */
  watchRows() {
    if (this.observer) this.observer.disconnect();
    this.unbuilt = new Map();
    this.painted = false;
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const build = entry.isIntersecting && this.unbuilt.get(entry.target);
        if (!build) continue;
        this.unbuilt.delete(entry.target);
        this.observer.unobserve(entry.target);
        build();
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
    for (const event of batch) {
      if (event.kind === "reconnected" || event.kind === "deleted") { reread = true; continue; }
      if (event.kind !== "state") continue;
      const known = this.bookingsOf.get(event.job_id);
      // New bookings, released ones and edits change which bars exist: read them again.
      if (!known || event.from === null || !HOLDS.has(event.to) || event.from === event.to) {
        reread = true;
      }
      for (const b of known || []) b.state = event.to; // rows not built yet
      for (const node of this.bars.get(event.job_id) || []) node.dataset.state = event.to;
    }
    if (reread) this.refresh();
  }
}

export function mount(root) {
  return new Timeline(root).mount();
}
