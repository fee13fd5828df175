"""The commands about single jobs: ``submit`` (one job, ``--wait``, or ``--file``),
``list``, ``show`` and ``edit``."""

from __future__ import annotations

import sys
import time

from jobd.client.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    FINISHED,
    UsageError,
    client_for,
    emit,
    err,
    error_suffix,
    filters_of,
    print_json,
)
from jobd.client.remote import ApiError

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from jobd.client.remote import Client


def submit_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``POST /v1/jobs`` body from the flags; unset flags are left to the daemon's defaults."""
    params: dict[str, Any] = dict(args.params_json or {})
    params.update(dict(args.param))
    body: dict[str, Any] = {"workflow": args.workflow, "params": params}
    for key in ("assets", "shared_assets", "resources", "pools"):
        if getattr(args, key):
            body[key] = getattr(args, key)
    optional = {
        "start_at": args.start,
        "end_at": args.end,
        "preroll": args.preroll,
        "postroll": args.postroll,
        "timeout": args.timeout,
        "lock_timeout": args.lock_timeout,
        "priority": args.priority,
        "name": args.name,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if args.draft:
        body["state"] = "draft"
    elif args.tentative:
        body["state"] = "tentative"
    return body


def cmd_submit(args: argparse.Namespace) -> int:
    if args.file is not None:
        return _submit_file(args)
    if not args.workflow:
        raise UsageError("submit needs a WORKFLOW, or --file F")
    if args.wait and (args.draft or args.tentative):
        raise UsageError("--wait needs a confirmed job: a draft or tentative job never runs")
    with client_for(args) as client:
        job = client.submit(submit_body(args))
        if not args.wait:
            print_json(job) if args.json else print(job["id"])
            return EXIT_OK
        if not args.json:
            print(job["id"], flush=True)
        final = wait_for(client, int(job["id"]))
    if args.json:
        print_json(final)
    state = final.get("state")
    print(f"job {final.get('id')} {state}" + error_suffix(final), file=sys.stderr)
    return EXIT_OK if state == "completed" else EXIT_FAILED


def _submit_file(args: argparse.Namespace) -> int:
    """``submit --file F``: the file's jobs in batches (:mod:`jobd.client.jobfile`); their ids
    on stdout (``--json``: the jobs), a count on stderr, a progress bar on a terminal."""
    from jobd.client import jobfile
    from jobd.client.textui import is_terminal

    if args.workflow or args.wait:
        raise UsageError("--file takes the jobs from the file: no WORKFLOW, no --wait")
    name = "stdin" if args.file == "-" else args.file
    try:
        if args.file == "-":
            jobs = jobfile.read_jobs(name, sys.stdin)
        else:
            with open(args.file, encoding="utf-8") as stream:
                jobs = jobfile.read_jobs(name, stream)
    except OSError as exc:
        err(f"{name}: {exc.strerror or exc}")
        return EXIT_FAILED
    except (jobfile.JobFileError, UnicodeDecodeError) as exc:
        err(str(exc))
        return EXIT_FAILED
    big = len(jobs) >= jobfile.PROGRESS_FROM and is_terminal(sys.stderr)
    try:
        with client_for(args) as client:
            stored = jobfile.submit_all(client, name, jobs, jobfile.ProgressBar() if big else None)
    except jobfile.JobFileError as exc:
        for line in str(exc).splitlines():
            err(line)
        return EXIT_FAILED
    if args.json:
        print_json({"items": stored})
    else:
        print("\n".join(str(job.get("id")) for job in stored))
    err(f"submitted {len(stored)} jobs from {name}")
    return EXIT_OK


def wait_for(client: Client, job_id: int) -> dict[str, Any]:
    """Follow ``job_id``'s events (printed on stderr) until it has finished; the final job.

    The stream is opened before the state is read, so a job that finishes in
    between is seen either in the state or in the stream, never missed. A
    stream the daemon ends early (it drops a reader that falls behind) is
    reopened; a daemon that is gone raises :class:`DaemonUnreachable`.
    """
    from jobd.client.render import event_line

    last_line = ""
    while True:
        with client.events(job_id) as events:
            job = client.get_job(job_id)
            if job.get("state") in FINISHED:
                return job
            for event in events:
                line = event_line(event)
                if line.plain != last_line:  # a step re-saved in the same state says nothing new
                    emit(line, stderr=True)
                    last_line = line.plain
                if event.get("kind") == "deleted":
                    raise ApiError(404, "not-found", f"job {job_id} was deleted while waiting")
                if event.get("kind") == "state" and event.get("to") in FINISHED:
                    return client.get_job(job_id)
        time.sleep(0.5)  # the stream ended early: reconnect at a modest pace


def cmd_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        page = client.list_jobs(limit=args.limit, cursor=args.cursor, filters=filters_of(args))
    if args.json:
        print_json(page)
        return EXIT_OK
    from jobd.client.render import jobs_table

    emit(jobs_table(page.get("items") or []))
    if page.get("next_cursor"):
        err(f"more jobs: --cursor {page['next_cursor']}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        job = client.get_job(args.job_id)
    if args.json:
        print_json(job)
        return EXIT_OK
    from jobd.client.render import job_detail

    emit(job_detail(job))
    return EXIT_OK


def _edit_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The ``PATCH`` body: only what was given (``-p`` merges into the params later)."""
    given = {
        "start_at": args.start,
        "end_at": args.end,
        "preroll": args.preroll,
        "postroll": args.postroll,
        "timeout": args.timeout,
        "lock_timeout": args.lock_timeout,
        "priority": args.priority,
        "name": args.name,
        "assets": args.assets,
        "shared_assets": args.shared_assets,
        "resources": args.resources,
        "pools": args.pools,
    }
    return {key: value for key, value in given.items() if value is not None}


def cmd_edit(args: argparse.Namespace) -> int:
    """``PATCH /v1/jobs/{id}`` with the fields given; ``-p`` sets single parameters on top
    of the job's current ones (the API replaces ``params`` whole)."""
    changes = _edit_changes(args)
    if not changes and not args.param:
        raise UsageError("nothing to change: give at least one option (see jobd edit --help)")
    with client_for(args) as client:
        if args.param:
            params = dict(client.get_job(args.job_id).get("params") or {})
            params.update(dict(args.param))
            changes["params"] = params
        job = client.edit_job(args.job_id, changes)
    if args.json:
        print_json(job)
    else:
        print(f"job {args.job_id}: edited ({', '.join(sorted(changes))}); {job.get('state')}")
    return EXIT_OK
