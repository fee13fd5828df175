// A timeline row's bars, drawn on a canvas: 10,000 bookings in view cost one
// canvas per resource row on screen and a few thousand rectangles, not a DOM
// element each. The bar under the pointer, or the one picked with the arrow keys,
// is a real link laid over its drawing (``a.bar``: its job's name, state and
// times; it opens the job), so every bar is a link to its job by mouse or keyboard.

import { fmtTime } from "./dom.js";

const LANE = 24; // px per sub-lane
const TOP = 3; // px above the first sub-lane
const HEIGHT = 20; // px of a bar
const FONT = "11px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
// Text on these states' colours is white (as in app.css); black on the others.
const LIGHT_TEXT = new Set(["draft", "confirmed", "completed", "timed-out"]);

/** Greedy packing so overlapping bookings of one resource (capacity > 1) sit on sub-lanes. */
export function pack(bookings) {
  const ends = [];
  bookings.sort((a, b) => a.start - b.start);
  for (const b of bookings) {
    let lane = ends.findIndex((end) => end <= b.start);
    if (lane < 0) lane = ends.push(0) - 1;
    ends[lane] = b.end;
    b.lane = lane;
  }
  return Math.max(ends.length, 1);
}

export function rowHeight(lanes) {
  return 2 * TOP + lanes * LANE;
}

let colours = null;

/** The state colours, read once from the style sheet's custom properties (one source). */
function colour(state) {
  if (colours === null) {
    colours = new Map();
    const style = getComputedStyle(document.documentElement);
    colours.set("", style.getPropertyValue("--paused").trim() || "#A9A9A9");
    for (const name of ["draft", "tentative", "confirmed", "pending", "queued", "waiting-for-lock",
      "running", "cancel-requested", "paused", "completed", "canceled", "failed", "timed-out"]) {
      colours.set(name, style.getPropertyValue(`--${name}`).trim() || colours.get(""));
    }
  }
  return colours.get(state) || colours.get("");
}

/** Where a booking is, in px of the lane, for a view [from, to] drawn ``pxPerMs`` wide. */
export function geometry(b, view) {
  const s = Math.max(view.from, b.start);
  const e = Math.min(view.to, b.end);
  const x = (s - view.from) * view.pxPerMs;
  const width = Math.max((e - s) * view.pxPerMs, 2);
  const windowStart = b.job.startAt ?? b.start;
  const windowEnd = b.job.endAt ?? b.end;
  return {
    x, width, y: TOP + b.lane * LANE, s, e,
    pre: Math.max(0, Math.min(windowStart, e) - s) * view.pxPerMs,
    post: Math.max(0, e - Math.max(windowEnd, s)) * view.pxPerMs,
  };
}

/** Draw ``bookings`` (packed, with ``lane``) on ``canvas``, ``width`` × ``height`` CSS px. */
export function draw(canvas, bookings, view, width, height) {
  const ratio = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = FONT;
  ctx.textBaseline = "middle";
  for (const b of bookings) {
    if (b.end < view.from || b.start > view.to) continue;
    const g = geometry(b, view);
    ctx.fillStyle = colour(b.job.state);
    ctx.fillRect(g.x, g.y, g.width, HEIGHT);
    shade(ctx, g);
    if (g.width >= 24) label(ctx, b, g);
  }
}

/** Preroll and postroll: the booked time around the job's own window, shaded, edged. */
function shade(ctx, g) {
  if (!g.pre && !g.post) return;
  ctx.fillStyle = "rgba(0, 0, 0, .45)";
  if (g.pre) ctx.fillRect(g.x, g.y, g.pre, HEIGHT);
  if (g.post) ctx.fillRect(g.x + g.width - g.post, g.y, g.post, HEIGHT);
  ctx.fillStyle = "rgba(255, 255, 255, .6)";
  if (g.pre) ctx.fillRect(g.x + g.pre - 1, g.y, 1, HEIGHT);
  if (g.post) ctx.fillRect(g.x + g.width - g.post, g.y, 1, HEIGHT);
}

function label(ctx, b, g) {
  const text = String(b.job.name);
  const room = g.width - 8;
  ctx.fillStyle = LIGHT_TEXT.has(b.job.state) ? "#fff" : "#000";
  if (text.length * 7 <= room) { // surely fits: no clipping needed
    ctx.fillText(text, g.x + 4, g.y + HEIGHT / 2);
    return;
  }
  ctx.save();
  ctx.beginPath();
  ctx.rect(g.x, g.y, g.width, HEIGHT);
  ctx.clip();
  ctx.fillText(text, g.x + 4, g.y + HEIGHT / 2);
  ctx.restore();
}

/** The booking drawn at (x, y) px of the lane, or null. */
export function hit(bookings, view, x, y) {
  const lane = Math.floor((y - TOP) / LANE);
  for (const b of bookings) {
    if (b.lane !== lane || b.end < view.from || b.start > view.to) continue;
    const g = geometry(b, view);
    if (x >= g.x - 1 && x <= g.x + g.width + 1) return b;
  }
  return null;
}

/** The link laid over booking ``b``'s drawing (percent positions, like the drawing). */
export function barLink(b, resource, view) {
  const g = geometry(b, view);
  const span = (view.to - view.from) * view.pxPerMs;
  const link = document.createElement("a");
  link.className = "bar";
  link.href = `/jobs/${Number(b.job.id)}`;
  link.dataset.jobId = b.job.id;
  link.dataset.state = b.job.state;
  link.dataset.resource = resource;
  const when = `${fmtTime(new Date(b.start).toISOString())} – ${fmtTime(new Date(b.end).toISOString())}`;
  link.title = `${b.job.name} (${b.job.state}) ${when}`;
  link.setAttribute("aria-label", String(b.job.name));
  link.style.left = `${(g.x / span) * 100}%`;
  link.style.width = `${(g.width / span) * 100}%`;
  link.style.top = `${g.y}px`;
  if (g.pre > 0) link.append(part("pre", g.pre / g.width, "preroll"));
  if (g.width >= 24) {
    const text = document.createElement("span");
    text.className = "live-span";
    text.textContent = b.job.name;
    link.append(text);
  }
  if (g.post > 0) link.append(part("post", g.post / g.width, "postroll"));
  return link;
}

function part(cls, fraction, title) {
  const node = document.createElement("span");
  node.className = cls;
  node.title = title;
  node.style.width = `${fraction * 100}%`;
  return node;
}
