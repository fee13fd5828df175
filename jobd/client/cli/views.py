"""The read-only views of the daemon: ``queue``, ``locks``, ``resources``, ``bookings``,
``plugins``; and ``schedules`` (also ``run|pause|resume NAME``)."""

from __future__ import annotations

from jobd.client.cli.common import EXIT_OK, UsageError, client_for, emit, print_json
from jobd.client.remote import Client

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any


def _show(
    args: argparse.Namespace,
    fetch: Callable[[Client], dict[str, Any]],
    render: Callable[[dict[str, Any]], Any],
) -> int:
    """Fetch, then print JSON (``--json``) or the rendered table."""
    with client_for(args) as client:
        data = fetch(client)
    if args.json:
        print_json(data)
    else:
        emit(render(data))
    return EXIT_OK


def cmd_queue(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(args, Client.queue, render.queue_view)


def cmd_locks(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(args, Client.locks, lambda data: render.locks_table(data.get("items") or []))


def cmd_resources(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(
        args, Client.resources, lambda data: render.resources_table(data.get("items") or [])
    )


def cmd_bookings(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(
        args,
        lambda client: client.bookings(args.start, args.end),
        lambda data: render.bookings_table(data.get("items") or []),
    )


def cmd_schedules(args: argparse.Namespace) -> int:
    """The schedules table; or ``run|pause|resume NAME`` (``POST /v1/schedules/NAME/...``)."""
    from jobd.client import render

    if args.action is not None:
        return _schedule_control(args)
    return _show(
        args, Client.schedules, lambda data: render.schedules_table(data.get("items") or [])
    )


def _schedule_control(args: argparse.Namespace) -> int:
    if not args.name:
        raise UsageError(f"schedules {args.action} needs the schedule's NAME")
    with client_for(args) as client:
        answer = client.schedule_control(args.name, args.action)
    if args.json:
        print_json(answer)
    elif args.action == "run":
        print(f"schedule {args.name}: fired now as job {answer.get('id')} ({answer.get('state')})")
    elif args.action == "pause":
        print(f"schedule {args.name}: paused (no firings until 'jobd schedules resume')")
    else:
        from jobd.client.render import local_time

        print(
            f"schedule {args.name}: resumed; next firing {local_time(answer.get('next_fire_at'))}"
        )
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(args, Client.plugins, render.plugins_view)


def cmd_nodes(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(args, Client.nodes, lambda data: render.nodes_table(data.get("items") or []))
