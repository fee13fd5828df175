"""The operations on jobs (``cancel``, ``pause``, ``retry``, ... : SPEC §2), by ids one
request each, or by filters through one ``POST /v1/batch/{operation}``."""

from __future__ import annotations

from jobd.client.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    client_for,
    err,
    error_suffix,
    filters_of,
)
from jobd.client.remote import ApiError

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any


def cmd_operation(args: argparse.Namespace) -> int:
    """Apply one operation to each id; report each; exit 1 if any was refused.

    With filters and no ids: the operation on every job that matches, in one
    ``POST /v1/batch/{operation}`` (:func:`_operate_matching`)."""
    filters = filters_of(args)
    if filters and args.job_ids:
        raise UsageError("give job ids or filters, not both")
    if filters:
        return _operate_matching(args, filters)
    if not args.job_ids:
        raise UsageError(f"{args.operation} needs job ids, or filters (--state S, ...)")
    refused = 0
    with client_for(args) as client:
        for job_id in args.job_ids:
            try:
                job = client.operate(job_id, args.operation)
            except ApiError as exc:
                refused += 1
                prefix = f"job {job_id}"
                err(exc.message if exc.message.startswith(prefix) else f"{prefix}: {exc.message}")
                continue
            print(_operation_report(job_id, args.operation, job))
    return EXIT_FAILED if refused else EXIT_OK


def _operate_matching(args: argparse.Namespace, filters: dict[str, Any]) -> int:
    """The batch route by filter: how many matched, were changed and were refused (each
    refusal on stderr); exit 1 if any was refused. Nothing matching changes nothing."""
    with client_for(args) as client:
        answer = client.operate_batch(args.operation, filters=filters)
    done, refused = answer.get("done") or [], answer.get("refused") or []
    matched = answer.get("matched", len(done) + len(refused))
    for item in refused:
        message = str((item.get("error") or {}).get("message", "refused"))
        prefix = f"job {item.get('id')}"
        err(message if message.startswith(prefix) else f"{prefix}: {message}")
    if not matched:
        print(f"{args.operation}: no job matches; nothing changed")
        return EXIT_OK
    created = answer.get("created")
    extra = f" (new jobs: {_id_list(created)})" if created else ""
    print(
        f"{args.operation}: {len(done)} changed, {len(refused)} refused, "
        f"of {matched} matching{extra}"
    )
    return EXIT_FAILED if refused else EXIT_OK


def _id_list(ids: list[Any]) -> str:
    shown = ", ".join(str(i) for i in ids[:20])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > 20 else "")


def _operation_report(job_id: int, operation: str, job: dict[str, Any] | None) -> str:
    if job is None:
        return f"job {job_id}: deleted"
    if operation == "resubmit":
        return f"job {job_id}: resubmitted as job {job.get('id')} ({job.get('state')})"
    return f"job {job_id}: {job.get('state')}" + error_suffix(job)
