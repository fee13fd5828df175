"""pluggy markers and the typed hook specifications of SPEC §4.

Plugin authors decorate module-level functions with :data:`hookimpl` and name
them after a method of :class:`JobdSpec`. jobd calls every hook through
:class:`jobd.plugin.host.PluginHost`, which calls each implementation on its own
and guards it, so one broken plugin cannot stop the others (pluggy alone stops
at the first exception). Hook wrappers are therefore not supported.

All hooks are synchronous: an implementation runs on the daemon's event loop
and must return quickly (hand slow work to a thread or a queue of your own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from jobd.config import Config
    from jobd.plugin.action import Action

PROJECT = "jobd"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class JobdSpec:
    """The hooks a jobd plugin may implement (an implementation may omit arguments)."""

    @hookspec
    def jobd_actions(self) -> list[Action]:
        """Return the actions this plugin offers, as a list of :class:`jobd.Action`.

        Called once per plugin while plugins are loaded (daemon start, reload).
        Names must match ``^[a-z][a-z0-9_.-]*$`` and be unique across all
        plugins: a duplicate is a configuration error naming both files. A
        raising implementation, or one returning anything but a list of
        ``Action``, marks the plugin as broken (shown by ``jobd plugins``) and
        none of its hooks is used.
        """
        raise NotImplementedError

    @hookspec
    def jobd_validate_job(self, job: dict[str, Any], config: Config) -> list[str]:
        """Return problems (human-readable strings) with a job being submitted or edited.

        Called for every submit and every edit, with the job as the API shows
        it (``workflow``, ``params``, ``assets``, ...). An empty list means no
        objection; any problem refuses the request (HTTP 400, all problems
        listed). A raising implementation, or one returning anything but a
        list of strings, is logged and ignored: a plugin bug must not block
        every submission.
        """
        raise NotImplementedError

    @hookspec(firstresult=True)
    def jobd_select_resource(
        self, pool: str, candidates: list[str], job: dict[str, Any]
    ) -> str | None:
        """Choose which free member of ``pool`` the job gets, or ``None`` to let others decide.

        Called when a job asks for "any one member of pool P". ``candidates``
        are the members free for the job's whole window, fewest bookings
        first; never empty. The first answer that is one of ``candidates``
        wins; an answer that is not is logged and ignored. jobd's own default
        answers last: ``candidates[0]``.
        """
        raise NotImplementedError

    @hookspec
    def jobd_job_event(self, job: dict[str, Any], event: dict[str, Any]) -> None:
        """Observe a committed change of a job (notifications, metrics, audit).

        Called after every state change has been written to the database,
        with the job and the event (``job_id``, ``kind``, ``at``, ``from``,
        ``to``, ``cause``, ``actor``, ``step``, ``data``). Treat both as
        read-only. ``actor`` is who made the change (``cli:alice``,
        ``api:ops-desk``, ``scheduler``, ``recovery``; SPEC §11): the user
        from the kernel or the token's name, never what the client claims.
        The return value is ignored; a raising implementation is logged with
        the plugin's name and ignored, and the other observers still get the
        event.
        """

    @hookspec
    def jobd_startup(self, config: Config) -> None:
        """Set the plugin up; called once after all plugins are loaded, before any job runs,
        and for a plugin file a reload loads (new or changed), once after that reload.

        A raising implementation is logged and ignored (its other hooks stay
        active: make them cope with a set-up that did not happen).
        """

    @hookspec
    def jobd_shutdown(self) -> None:
        """Tear the plugin down; called once when the daemon stops, after jobs stopped,
        and for a plugin file a reload removes or replaces, once at that reload.

        A raising implementation is logged and ignored.
        """
