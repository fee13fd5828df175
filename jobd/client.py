"""The HTTP client the CLI uses to talk to a running daemon (SPEC §6, §7).

Cheap to import: ``httpx`` is imported when a :class:`Client` is built, not
here, so ``jobd --help`` and argument errors stay instant.

Where the daemon is (:func:`resolve_endpoint`), first match wins:

1. ``--socket`` / ``JOBD_SOCKET``: a Unix socket path;
2. ``--url`` / ``JOBD_URL`` (with ``--token`` / ``JOBD_TOKEN``): TCP;
3. ``[api] socket`` of the config (``--config`` / ``JOBD_CONFIG`` / the default path).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

#: Seconds to wait for an answer. Generous: a cancel may wait for a step to stop.
DEFAULT_TIMEOUT = 120.0
#: Seconds to wait for a connection: a daemon that is not there should be said so quickly.
CONNECT_TIMEOUT = 5.0
#: An event stream is silent at most 15 s (keep-alive); longer means the daemon is gone.
STREAM_READ_TIMEOUT = 60.0


class DaemonUnreachable(Exception):
    """No daemon answers at the endpoint (CLI exit code 3). The message names where we looked."""


class ApiError(Exception):
    """The daemon answered with an error: ``status`` and the ``{code, message, details}`` shape."""

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details: dict[str, Any] = dict(details or {})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the daemon listens: a Unix socket, or a URL with an optional bearer token."""

    socket: Path | None = None
    url: str | None = None
    token: str | None = None

    def describe(self) -> str:
        return f"unix socket {self.socket}" if self.socket is not None else f"{self.url}"


def resolve_endpoint(
    *,
    socket: str | None = None,
    url: str | None = None,
    token: str | None = None,
    config: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Endpoint:
    """Apply the resolution order above; options win over environment variables.

    The config file is read only in the last case, and a config that cannot be
    read falls back to the default socket path with a warning on stderr (a
    broken workflow in the config must not stop ``jobd list`` from working).
    """
    env = os.environ if environ is None else environ
    socket = socket or env.get("JOBD_SOCKET") or None
    if socket:
        return Endpoint(socket=Path(socket))
    url = url or env.get("JOBD_URL") or None
    if url:
        return Endpoint(url=url.rstrip("/"), token=token or env.get("JOBD_TOKEN") or None)
    return Endpoint(socket=_configured_socket(config or env.get("JOBD_CONFIG") or None))


def _configured_socket(config_path: str | None) -> Path:
    from jobd.config import DEFAULT_CONFIG_PATH, ApiConfig, load_config
    from jobd.errors import JobdError

    path = Path(config_path) if config_path else DEFAULT_CONFIG_PATH
    if config_path is None and not path.exists():
        return ApiConfig().socket  # no config at all: the packaged default
    try:
        return load_config(path).api.socket
    except (JobdError, OSError) as exc:
        print(
            f"jobd: warning: cannot read {path} to find the socket ({exc}); "
            f"trying {ApiConfig().socket}",
            file=sys.stderr,
        )
        return ApiConfig().socket


class Client:
    """A synchronous client for the daemon's API. Use as a context manager, or :meth:`close`.

    Every method returns the decoded JSON answer, raises :class:`ApiError` for
    an error answer and :class:`DaemonUnreachable` when nothing answers.
    Requests carry ``X-Jobd-Client: cli``: the job history then records ``cli:<user>``
    (the daemon learns the user from the kernel or the token, never from us).
    """

    def __init__(self, endpoint: Endpoint, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        import httpx

        self.endpoint = endpoint
        limits = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)
        headers = {"x-jobd-client": "cli", "user-agent": "jobd-cli"}
        if endpoint.token:
            headers["authorization"] = f"Bearer {endpoint.token}"
        if endpoint.socket is not None:
            transport = httpx.HTTPTransport(uds=str(endpoint.socket))
            self._http = httpx.Client(
                transport=transport, base_url="http://jobd", headers=headers, timeout=limits
            )
        else:
            self._http = httpx.Client(base_url=endpoint.url or "", headers=headers, timeout=limits)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ transport

    def request(self, method: str, path: str, *, json_body: Any = None, params: Any = None) -> Any:
        """One request; the decoded JSON body (``None`` for 204)."""
        import httpx

        try:
            response = self._http.request(method, path, json=json_body, params=params)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        return _decode(response)

    def _unreachable(self, exc: Exception) -> DaemonUnreachable:
        reason = str(exc) or type(exc).__name__
        return DaemonUnreachable(f"cannot reach jobd at {self.endpoint.describe()}: {reason}")

    # ------------------------------------------------------------------ routes

    def health(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/health"))

    def submit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/jobs", json_body=dict(body)))

    def list_jobs(
        self, states: list[str] | None = None, limit: int | None = None, cursor: int | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if states:
            params["state"] = states
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        return dict(self.request("GET", "/v1/jobs", params=params))

    def get_job(self, job_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/jobs/{job_id}"))

    def edit_job(self, job_id: int, changes: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/v1/jobs/{job_id}", json_body=dict(changes)))

    def operate(self, job_id: int, operation: str) -> dict[str, Any] | None:
        """Apply an operation; the job after it (the NEW job for ``resubmit``; None for delete)."""
        if operation == "delete":
            self.request("DELETE", f"/v1/jobs/{job_id}")
            return None
        answer = self.request("POST", f"/v1/jobs/{job_id}/{operation}")
        return None if answer is None else dict(answer)

    def job_log(self, job_id: int, after: int = 0, limit: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"after": after}
        if limit is not None:
            params["limit"] = limit
        return dict(self.request("GET", f"/v1/jobs/{job_id}/log", params=params))

    def queue(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/queue"))

    def locks(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/locks"))

    def resources(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/resources"))

    def bookings(self, start: str | None = None, end: str | None = None) -> dict[str, Any]:
        params = {key: value for key, value in (("from", start), ("to", end)) if value}
        return dict(self.request("GET", "/v1/bookings", params=params))

    def schedules(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/schedules"))

    def plugins(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/plugins"))

    def reload(self) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/reload"))

    @contextmanager
    def events(self, job_id: int | None = None) -> Iterator[Iterator[dict[str, Any]]]:
        """Open ``GET /v1/events`` (optionally ``?job=ID``) and yield an iterator of events.

        When the ``with`` block is entered the daemon has subscribed (it
        subscribes before it answers), so reading a job's state inside the
        block and then iterating misses nothing. Each item is one event's
        JSON; the iterator ends when the daemon ends the stream. A lost
        connection raises :class:`DaemonUnreachable`.
        """
        import httpx

        params = {"job": job_id} if job_id is not None else None
        timeout = httpx.Timeout(DEFAULT_TIMEOUT, connect=CONNECT_TIMEOUT, read=STREAM_READ_TIMEOUT)
        try:
            with self._http.stream("GET", "/v1/events", params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    _decode(response)
                yield parse_sse(response.iter_lines())
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def stream_events(self, job_id: int | None = None) -> Iterator[dict[str, Any]]:
        """Every event (of ``job_id`` only, if given) until the daemon ends the stream."""
        with self.events(job_id) as events:
            yield from events


def _decode(response: httpx.Response) -> Any:
    """The JSON of a success; :class:`ApiError` built from the error shape otherwise."""
    if response.status_code == 204 or not response.content:
        if response.status_code >= 400:
            raise ApiError(response.status_code, "http-error", f"HTTP {response.status_code}")
        return None
    try:
        payload = response.json()
    except ValueError:
        raise ApiError(
            response.status_code,
            "bad-answer",
            f"HTTP {response.status_code}: the daemon's answer is not JSON",
        ) from None
    if response.status_code >= 400:
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            raise ApiError(response.status_code, "http-error", f"HTTP {response.status_code}")
        raise ApiError(
            response.status_code,
            str(error.get("code", "error")),
            str(error.get("message", "")),
            error.get("details") or {},
        )
    return payload


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Decode server-sent events: ``data:`` lines up to a blank line make one event.

    Comment lines (``: keepalive``) are skipped; only ``event: job`` (or
    unnamed) events are yielded, as their decoded JSON data.
    """
    event_type, data_lines = "message", list[str]()
    for line in lines:
        if line == "":
            if data_lines and event_type in {"job", "message"}:
                yield json.loads("\n".join(data_lines))
            event_type, data_lines = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event_type = value
            elif field == "data":
                data_lines.append(value)
