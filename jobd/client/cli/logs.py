"""``jobd logs ID``: a job's log lines (``--tail N``), and ``-f`` to follow them."""

from __future__ import annotations

import json
import time

from jobd.client.cli.common import EXIT_OK, FINISHED, client_for, emit, print_json
from jobd.client.remote import ApiError, DaemonUnreachable

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator
    from typing import Any

    from jobd.client.remote import Client


def cmd_logs(args: argparse.Namespace) -> int:
    """A job's lines (``--tail N``: the last N); ``-f`` follows the job's event stream."""
    with client_for(args) as client:
        lines, after = _existing_lines(client, args.job_id, args.tail)
        if args.json and not args.follow:
            print_json({"items": lines, "next_cursor": None})
            return EXIT_OK
        for line in lines:
            _print_log_line(line, as_json=args.json)
        if args.follow:
            for line in _follow_lines(client, args.job_id, after):
                _print_log_line(line, as_json=args.json)
    return EXIT_OK


def _print_log_line(line: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(line, ensure_ascii=False), flush=True)
        return
    from jobd.client.render import log_line

    emit(log_line(line))


def _new_lines(client: Client, job_id: int, after: int) -> Iterator[dict[str, Any]]:
    """Every line with ``seq > after``, page by page."""
    while True:
        page = client.job_log(job_id, after)
        for line in page.get("items") or []:
            after = max(after, int(line.get("seq", after)))
            yield line
        if not page.get("next_cursor"):
            return


def _existing_lines(
    client: Client, job_id: int, tail: int | None
) -> tuple[list[dict[str, Any]], int]:
    """The job's lines so far (only the last ``tail`` if given) and the last ``seq`` read."""
    from collections import deque

    kept: deque[dict[str, Any]] = deque(maxlen=tail)
    after = 0
    for line in _new_lines(client, job_id, 0):
        after = max(after, int(line.get("seq", after)))
        kept.append(line)
    return list(kept), after


#: ``logs -f``: while the event stream is quiet, look for new lines this often (a step's
#: output changes no state, so it raises no event).
QUIET_REFRESH = 1.0


def _follow_lines(client: Client, job_id: int, after: int) -> Iterator[dict[str, Any]]:
    """New lines as the job's events arrive (``GET /v1/events?job=ID``), until it finished.

    The stream is opened before the state is read, so a job that finishes in
    between is seen one way or the other; its final state is read *before*
    the last fetch, so that fetch has every line the job will write. A stream
    the daemon ends early is reopened.
    """
    import queue

    while True:
        with client.events(job_id) as events:
            inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
            _pump_events(events, inbox)
            while True:
                finished = client.get_job(job_id).get("state") in FINISHED
                for line in _new_lines(client, job_id, after):
                    after = max(after, int(line.get("seq", after)))
                    yield line
                if finished:
                    return
                try:
                    if inbox.get(timeout=QUIET_REFRESH) is None:
                        break  # the stream ended: reopen it
                except queue.Empty:
                    pass
        time.sleep(0.5)  # reconnect at a modest pace


def _pump_events(events: Iterator[dict[str, Any]], inbox: Any) -> None:
    """Read ``events`` on a daemon thread into ``inbox``; ``None`` when the stream ends."""
    import threading

    def pump() -> None:
        try:
            for event in events:
                inbox.put(event)
        except (DaemonUnreachable, ApiError, OSError, ValueError):
            pass
        inbox.put(None)

    threading.Thread(target=pump, name="jobd-logs-events", daemon=True).start()
