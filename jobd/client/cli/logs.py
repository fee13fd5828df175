"""``jobd logs ID``: a job's log lines (``--tail N``), and ``-f`` to follow them."""

from __future__ import annotations

import time

from jobd.client.cli.common import EXIT_OK, FINISHED, client_for, emit, print_json
from jobd.client.jsonio import dumps

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
        print(dumps(line, ensure_ascii=False), flush=True)
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


def _follow_lines(client: Client, job_id: int, after: int) -> Iterator[dict[str, Any]]:
    """New lines as the daemon commits them, until the job has finished: the job's event
    stream with its log on it (``GET /v1/events?job=ID&log=true&after=SEQ``), no polling.

    The daemon sends the lines past ``after`` first, then each new one, and every line
    before the state event that finishes the job. The state is read once the stream is
    open: a job that had finished by then has written all its lines, which one more
    read of the log gets. A stream the daemon ends early is reopened past the last line.
    """
    while True:
        with client.events(job_id, log_after=after) as events:
            if client.get_job(job_id).get("state") in FINISHED:
                yield from _new_lines(client, job_id, after)
                return
            for event in events:
                kind = event.get("kind")
                if kind == "log" and int((event.get("data") or {}).get("seq", 0)) > after:
                    line = _line_of(event)
                    after = line["seq"]
                    yield line
                elif kind == "state" and event.get("to") in FINISHED:
                    return
                elif kind == "deleted":
                    client.get_job(job_id)  # the daemon's "not found" (exit 1)
                    return
        time.sleep(0.5)  # the stream ended early: reconnect at a modest pace


def _line_of(event: dict[str, Any]) -> dict[str, Any]:
    """A ``kind: "log"`` event as the line ``GET /v1/jobs/{id}/log`` lists."""
    data = event.get("data") or {}
    return {
        "seq": int(data.get("seq", 0)),
        "at": event.get("at"),
        "step": event.get("step"),
        "level": data.get("level"),
        "message": data.get("message"),
    }
