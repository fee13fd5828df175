"""``jobd watch``: a live view of the queue and the latest jobs, redrawn on every event
(a terminal), or one line per event (a pipe or file)."""

from __future__ import annotations

import time

from jobd.client.cli.common import EXIT_OK, client_for, err
from jobd.client.remote import ApiError, DaemonUnreachable

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from jobd.client.remote import Client


def cmd_watch(args: argparse.Namespace) -> int:
    """Redraw the queue and latest jobs on every event, and at least every ``--interval`` s.

    A background thread follows the event stream and wakes the drawing loop;
    when the daemon goes away the view says so and keeps retrying. Ctrl-C
    ends it (exit 0). When stdout is not a terminal there is nothing to
    redraw: one line per event instead (:func:`_watch_lines`).
    """
    from jobd.client.textui import is_terminal, rich_console

    if not is_terminal():
        return _watch_lines(args)
    from rich.live import Live

    follower = _EventFollower(args)
    follower.start()
    try:
        with client_for(args) as client, Live(auto_refresh=False, console=rich_console()) as live:
            _watch_loop(args, client, live, follower)
    except KeyboardInterrupt:
        pass
    finally:
        follower.stop.set()
    return EXIT_OK


def _watch_lines(args: argparse.Namespace) -> int:
    """``jobd watch`` into a pipe or file: each event as one line,
    flushed at once; a stream the daemon ends is reopened. Ctrl-C ends it (exit 0)."""
    from jobd.client.render import event_line

    try:
        with client_for(args) as client:
            while True:
                with client.events() as events:
                    err(f"watching events at {client.endpoint.describe()} (Ctrl-C to stop)")
                    for event in events:
                        print(event_line(event).plain, flush=True)
                time.sleep(0.5)  # the stream ended early: reconnect at a modest pace
    except KeyboardInterrupt:
        return EXIT_OK


def _watch_loop(
    args: argparse.Namespace, client: Client, live: Any, follower: _EventFollower
) -> None:
    from jobd.client.render import watch_view
    from jobd.client.textui import to_rich

    queue: dict[str, Any] = {}
    jobs: list[dict[str, Any]] = []
    while True:
        problem = None
        try:
            queue = client.queue()
            jobs = client.list_jobs(limit=args.limit).get("items") or []
        except (DaemonUnreachable, ApiError) as exc:
            problem = str(exc)  # keep showing the last view, with the reason
        view = watch_view(queue, jobs, list(follower.recent), problem)
        live.update(to_rich(view), refresh=True)
        follower.wake.wait(args.interval)
        follower.wake.clear()


class _EventFollower:
    """Watch's event thread: keeps the latest events and wakes the view on each one.

    A daemon thread, so an exiting CLI never waits for it; after ``stop`` is
    set it ends at the next event or when the stream closes, and never
    reconnects.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        import threading
        from collections import deque

        self.args = args
        self.recent: deque[dict[str, Any]] = deque(maxlen=8)
        self.wake = threading.Event()
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobd-watch-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                with client_for(self.args) as client:
                    for event in client.stream_events():
                        self.recent.append(event)
                        self.wake.set()
                        if self.stop.is_set():
                            return
            except (DaemonUnreachable, ApiError):
                pass
            self.stop.wait(2.0)  # daemon away: retry at a human pace
