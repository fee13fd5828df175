"""The web monitor in headless Chromium (issue 12), against the real daemon over TCP.

1. **First screen** with N jobs stored (1,000,000 by default; filled in bulk by
   ``bench.scale.populate``): the page's own mark ``jobd:first-screen`` (ms from
   navigation start to the first rows in the table: shell, modules, token, event
   stream, list), median of ``--runs`` fresh loads.
2. **Timeline** with B bookings in view (10,000: 100 resources in 10 pools, 100
   bookings each with preroll and postroll, submitted in one ``POST /v1/batch/jobs``):
   ``jobd:timeline-fetched`` (navigation start to the bookings of the rows in sight in
   hand), the render measure (building the rows), ``jobd:timeline-painted`` (navigation
   start to the frame after the rows in sight were drawn and painted: the figure) and
   ``jobd:timeline-complete`` (every booking of the view in hand), median of runs; the
   ``GET /v1/bookings`` answer (bytes, the daemon's time) and the last load's requests and
   marks (Resource Timing). Rows are drawn on canvases; scrolling draws the others.
3. **Events**: the jobs page open while the daemon emits about R events/s for S
   seconds (no-op jobs submitted in batches every 100 ms; each makes ~6 events). A
   ``PerformanceObserver`` of type ``longtask`` counts main-thread tasks over 50 ms;
   reported: events/s the page received, the longest task, tasks over 100 ms, and the
   delay of a ``requestAnimationFrame`` callback sampled every 100 ms (responsiveness).

Prints one JSON line. Usage: ``python -m bench.web [--jobs N] [--bookings B] [--rate R]
[--seconds S] [--runs K] [--phases jobs,timeline,events]``.
Needs playwright (dev extra) and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from bench.api import CONFIG, PLUGINS, daemon, short_dir
from bench.scale import populate

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "bench-web-token"
RESOURCES = [f"r-{i:03d}" for i in range(100)]
PHASES = "jobs,timeline,events"
SLOT = 14 * 60  # s between bookings of one resource: 10 min window + 1 + 1 min pre/postroll


def write_config(base: Path, port: int) -> Path:
    token = base / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    text = CONFIG.format(
        state=base / "state",
        plugins=PLUGINS,
        workers=8,
        queue=1000,
        socket=base / "jobd.sock",
        level="warning",
    ).replace(
        'socket_mode = "0600"',
        f'socket_mode = "0600"\nlisten = "127.0.0.1:{port}"\ntoken_file = "{token}"',
    )
    text += "".join(f"\n[resources.{r}]\n" for r in RESOURCES)
    for p in range(10):
        members = ", ".join(f'"{r}"' for r in RESOURCES[p * 10 : p * 10 + 10])
        text += f"\n[pools.pool-{p}]\nmembers = [{members}]\n"
    path = base / "jobd.toml"
    path.write_text(text)
    return path


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def book(client: httpx.Client, count: int, day0: float) -> None:
    """``count`` tentative bookings, side by side on the resources, from ``day0`` on."""
    jobs = []
    for n in range(count):
        start = day0 + (n // len(RESOURCES)) * SLOT + 60
        jobs.append(
            {
                "workflow": "noop",
                "state": "tentative",
                "resources": [RESOURCES[n % len(RESOURCES)]],
                "start_at": iso(start),
                "end_at": iso(start + 600),
                "preroll": 60.0,
                "postroll": 60.0,
                "name": f"booking-{n}",
            }
        )
    for lo in range(0, len(jobs), 10_000):
        r = client.post("/v1/batch/jobs", json={"jobs": jobs[lo : lo + 10_000]}, timeout=600)
        if r.status_code != 201:
            raise RuntimeError(f"batch submit: {r.status_code} {r.text[:300]}")


def mark(page: Page, name: str, timeout: float = 60.0) -> float:
    """The start time (ms since navigation) of the page's performance entry ``name``."""
    # Polled from here: wait_for_function evaluates a string in the page, which the
    # page's Content-Security-Policy (no 'unsafe-eval') rightly forbids.
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"performance.getEntriesByName({name!r}).length > 0"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the page set no {name} mark within {timeout} s")
        page.wait_for_timeout(20)
    return float(page.evaluate(f"performance.getEntriesByName({name!r})[0].startTime"))


def first_screen(page: Page, url: str, runs: int) -> dict[str, Any]:
    times = []
    for _ in range(runs):
        page.goto(url + "/")
        times.append(mark(page, "jobd:first-screen"))
    rows = page.locator("tbody tr[data-job-id]").count()
    return {"first_screen_ms": round(statistics.median(times), 1), "runs_ms": times, "rows": rows}


def timeline(page: Page, url: str, day0: float, runs: int) -> dict[str, Any]:
    fetched, render, painted, complete = [], [], [], []
    for _ in range(runs):
        page.goto(f"{url}/timeline?zoom=day&from={iso(day0 - 600).replace('+00:00', 'Z')}")
        fetched.append(mark(page, "jobd:timeline-fetched"))
        mark(page, "jobd:timeline-render")
        render.append(
            page.evaluate("performance.getEntriesByName('jobd:timeline-render')[0].duration")
        )
        painted.append(mark(page, "jobd:timeline-painted"))
        complete.append(mark(page, "jobd:timeline-complete"))
    shown = int(page.locator(".timeline").get_attribute("data-bookings") or 0)
    # Drawn when first painted: the rows in sight.
    first = int(page.locator(".timeline").get_attribute("data-drawn") or 0)
    answer = page.evaluate(BOOKINGS_TIMING)
    waterfall = page.evaluate(WATERFALL)
    waterfall += page.evaluate(MARKS)
    t0 = time.perf_counter()
    page.mouse.move(800, 500)
    for _ in range(400):
        if page.locator(".timeline").get_attribute("data-built") == "all":
            break
        page.mouse.wheel(0, 600)
        page.wait_for_timeout(50)
    else:
        raise RuntimeError("scrolling never built every row")
    scrolled_s = time.perf_counter() - t0
    return {
        "bookings_in_view": shown,
        "bars_drawn_first": first,
        "bars_drawn_after_scrolling": int(
            page.locator(".timeline").get_attribute("data-drawn") or 0
        ),
        "bookings_answer": answer,
        "requests": waterfall,
        "scroll_to_the_end_s": round(scrolled_s, 2),
        "data_in_hand_ms": round(statistics.median(fetched), 1),
        "render_ms": round(statistics.median(render), 1),
        "painted_ms": round(statistics.median(painted), 1),
        "painted_runs_ms": [round(t) for t in painted],
        "every_booking_in_hand_ms": round(statistics.median(complete), 1),
    }


#: The last ``GET /v1/bookings`` of the page (Resource Timing): bytes, the daemon's time
#: to the first byte, the download.
BOOKINGS_TIMING = """(() => {
  const r = performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/bookings'))
    .pop();
  return r && {bytes: r.encodedBodySize, wait_ms: Math.round(r.responseStart - r.requestStart),
    download_ms: Math.round(r.responseEnd - r.responseStart)};
})()"""

#: Every request of the page's last load: path, ms from navigation start to its start and
#: to its end (where the time to the first screen goes).
WATERFALL = """performance.getEntriesByType('resource').map(e =>
  [new URL(e.name).pathname, Math.round(e.startTime), Math.round(e.responseEnd)])"""

MARKS = """performance.getEntriesByType('mark').map(e => [e.name, Math.round(e.startTime)])"""

OBSERVE = """
window.__long = [];
new PerformanceObserver(l => { for (const e of l.getEntries()) window.__long.push(e.duration); })
  .observe({type: 'longtask', buffered: false});
// Long animation frames name the scripts that made them (where a long task comes from).
window.__loaf = [];
new PerformanceObserver(l => {
  for (const e of l.getEntries()) {
    if (e.duration <= 50) continue;
    window.__loaf.push({ms: Math.round(e.duration), blocking_ms: Math.round(e.blockingDuration),
      layout_ms: Math.round(e.renderStart ? e.startTime + e.duration - e.renderStart : 0),
      scripts: e.scripts.map(s => [s.invoker, s.sourceFunctionName,
        s.sourceURL.split('/').pop() + ':' + s.sourceCharPosition, Math.round(s.duration)])});
  }
}).observe({type: 'long-animation-frame', buffered: false});
window.__lag = [];
window.__sampler = setInterval(() => {
  const t = performance.now();
  requestAnimationFrame(() => window.__lag.push(performance.now() - t));
}, 100);
"""


def emit(sock: Path, rate: int, seconds: float, stop: threading.Event) -> int:
    """Submit no-op jobs at about ``rate / 6`` jobs/s (each makes ~6 events)."""
    per_tick = max(1, rate // 6 // 10)
    sent = 0
    transport = httpx.HTTPTransport(uds=str(sock))
    with httpx.Client(transport=transport, base_url="http://jobd", timeout=60) as client:
        deadline = time.monotonic() + seconds
        tick = time.monotonic()
        while time.monotonic() < deadline and not stop.is_set():
            client.post("/v1/batch/jobs", json={"jobs": [{"workflow": "noop"}] * per_tick})
            sent += per_tick
            tick += 0.1
            time.sleep(max(0.0, tick - time.monotonic()))  # pacing a load generator
    return sent


def main_thread(cdp: Any) -> dict[str, float]:
    """The renderer's totals so far (CDP ``Performance.getMetrics``): seconds spent in
    script, style, layout and tasks, and how many layouts and style recalculations."""
    keep = {"ScriptDuration", "RecalcStyleDuration", "LayoutDuration", "TaskDuration"}
    keep |= {"LayoutCount", "RecalcStyleCount"}
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return {m["name"]: float(m["value"]) for m in metrics if m["name"] in keep}


def events(page: Page, url: str, sock: Path, rate: int, seconds: float) -> dict[str, Any]:
    page.goto(url + "/")
    mark(page, "jobd:first-screen")
    page.evaluate(OBSERVE)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    start = main_thread(cdp)
    before = page.evaluate("window.jobdLive.events")
    t0 = time.monotonic()
    sent = emit(sock, rate, seconds, threading.Event())
    elapsed = time.monotonic() - t0
    page.wait_for_timeout(1000)  # let the last batches arrive and render
    spent = {k: round(v - start.get(k, 0.0), 3) for k, v in main_thread(cdp).items()}
    got = page.evaluate("window.jobdLive.events") - before
    long = page.evaluate("window.__long")
    lag = sorted(page.evaluate("window.__lag"))
    frames = sorted(page.evaluate("window.__loaf"), key=lambda f: -f["ms"])
    return {
        "jobs_submitted": sent,
        "events_per_s_received": round(got / elapsed),
        "longest_task_ms": round(max(long, default=0.0), 1),
        "tasks_over_50ms": len(long),
        "tasks_over_100ms": sum(1 for d in long if d > 100),
        "frame_delay_p50_ms": round(lag[len(lag) // 2], 1) if lag else None,
        "frame_delay_max_ms": round(lag[-1], 1) if lag else None,
        "longest_frames": frames[:5],
        "main_thread_s": spent,
    }


def loaded(phase: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``phase(*args)`` with the machine's 1-minute load average before and after it."""
    before = os.getloadavg()[0]
    out = phase(*args)
    out["load_average"] = [round(before, 1), round(os.getloadavg()[0], 1)]
    return out


def measure(
    jobs: int, bookings: int, rate: int, seconds: float, runs: int, phases: str = PHASES
) -> dict[str, Any]:
    """The three figures of the module docstring, from a fresh daemon and browser."""
    from tests.e2e import free_port

    base = short_dir()
    port = free_port()
    config = write_config(base, port)
    (base / "state").mkdir()
    fill_s = populate(base / "state" / "jobd.db", jobs)
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"jobs_stored": jobs, "fill_s": round(fill_s, 1)}
    try:
        with daemon(base, config) as d, sync_playwright() as pw:
            day0 = time.time() + 3600
            transport = httpx.HTTPTransport(uds=str(d.socket))
            with httpx.Client(transport=transport, base_url="http://jobd") as client:
                book(client, bookings, day0)
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.add_init_script(f"sessionStorage.setItem('jobd.token', {TOKEN!r})")
            page = context.new_page()
            if "jobs" in phases:
                out["jobs_page"] = loaded(first_screen, page, url, runs)
            if "timeline" in phases:
                out["timeline"] = loaded(timeline, page, url, day0, runs)
            if "events" in phases:
                out["events"] = loaded(events, page, url, d.socket, rate, seconds)
            out["chromium"] = browser.version
            browser.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--bookings", type=int, default=10_000)
    p.add_argument("--rate", type=int, default=1000, help="events/s to cause")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--phases", default=PHASES, help="which of jobs,timeline,events to run")
    args = p.parse_args()
    found = measure(args.jobs, args.bookings, args.rate, args.seconds, args.runs, args.phases)
    print(json.dumps(found))


if __name__ == "__main__":
    main()
