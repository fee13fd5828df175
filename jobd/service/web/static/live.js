// The live feed: GET /v1/events read with fetch (EventSource cannot send the
// bearer header), events batched per animation frame so a burst of 1,000 a
// second costs at most ten renders a second, and a reconnect loop that says so while
// the daemon is away.

import { authHeaders, askToken } from "./api.js";

const SILENCE = 60000; // ms: the daemon sends a keep-alive every 15 s
const listeners = new Set();
let buffer = [];
let flushScheduled = false;
let lastFlush = -Infinity;
const FLUSH_GAP = 100; // ms
let connectedOnce = false;
let resolveFirst;
/** Resolves when the stream first connects (pages load after, so they miss nothing). */
export const firstConnect = new Promise((resolve) => { resolveFirst = resolve; });

/**
 * ``fn(batch)`` gets arrays of events (the JSON of each ``event: job``). After a
 * reconnect the batch starts with ``{kind: "reconnected"}``: re-read the state.
 */
export function onEvents(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Counters for bench/web.py and tests: events received, batches handed to the views. */
export const stats = { events: 0, batches: 0 };
window.jobdLive = stats;

function push(event) {
  stats.events += 1;
  buffer.push(event);
  if (flushScheduled) return;
  flushScheduled = true;
  // A hidden tab gets no animation frames; a timer keeps the buffer from growing.
  if (document.hidden) { setTimeout(flush, 1000); return; }
  // At most one batch per FLUSH_GAP ms, in an animation frame: a flood of events costs a
  // handful of renders a second, not sixty (each frame the views touch is laid out and
  // painted again, and on a busy machine that is where long tasks came from).
  const wait = lastFlush + FLUSH_GAP - performance.now();
  if (wait > 0) setTimeout(() => requestAnimationFrame(flush), wait);
  else requestAnimationFrame(flush);
}

function flush() {
  flushScheduled = false;
  lastFlush = performance.now();
  stats.batches += 1;
  const batch = buffer;
  buffer = [];
  for (const fn of listeners) {
    try {
      fn(batch);
    } catch (error) {
      console.error("event listener failed", error);
    }
  }
}

function setStatus(state, text) {
  const node = document.getElementById("live");
  node.dataset.live = state;
  node.textContent = text;
}

/** Follow ``path`` (``/v1/events`` or ``/v1/events?job=ID``) for as long as the page lives. */
export async function follow(path = "/v1/events") {
  let delay = 500;
  for (;;) {
    try {
      const ok = await stream(path, () => { delay = 500; });
      if (ok === "auth") continue;
    } catch (error) {
      // fetch failed or the stream broke: the daemon is away.
    }
    setStatus("away", "daemon unreachable: reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

async function stream(path, onOpen) {
  const controller = new AbortController();
  const response = await fetch(path, { headers: authHeaders(), cache: "no-store",
    signal: controller.signal });
  if (response.status === 401) {
    await askToken(authHeaders().Authorization ? "that token was refused; try again" : "");
    return "auth";
  }
  if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
  onOpen();
  setStatus("live", "live");
  if (connectedOnce) push({ kind: "reconnected" });
  connectedOnce = true;
  resolveFirst();
  await read(response.body, controller);
  return "ended";
}

async function read(body, controller) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let watchdog = setTimeout(() => controller.abort(), SILENCE);
  let pending = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), SILENCE);
      // One split per chunk: a chunk that holds a thousand events (the tab was busy
      // meanwhile) costs linear time, not a copy of the rest after each event.
      const frames = (pending + value).split("\n\n");
      pending = frames.pop();
      for (const text of frames) frame(text);
    }
  } finally {
    clearTimeout(watchdog);
  }
}

function frame(text) {
  for (const line of text.split("\n")) {
    if (line.startsWith("data:")) {
      try {
        push(JSON.parse(line.slice(5)));
      } catch (error) {
        console.warn("unreadable event", line);
      }
    }
  }
}

/**
 * Call ``fn`` at most once per ``interval`` ms, never two at once: for re-reads
 * that events trigger (the page re-reads, it never polls).
 */
export function throttled(fn, interval = 500) {
  let running = false;
  let again = false;
  let last = 0;
  const run = async () => {
    if (running) { again = true; return; }
    const wait = last + interval - performance.now();
    if (wait > 0) {
      running = true;
      await new Promise((resolve) => setTimeout(resolve, wait));
      running = false;
    }
    running = true;
    last = performance.now();
    try {
      await fn();
    } catch (error) {
      console.error(error);
    } finally {
      running = false;
    }
    if (again) { again = false; run(); }
  };
  return run;
}
