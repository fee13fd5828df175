"""The HTTP client the CLI uses to talk to a running daemon (SPEC §6, §7).

Cheap to import and to use: it speaks HTTP/1.1 through :mod:`jobd.client.wire`
(standard-library sockets), not httpx, because a CLI command's start-up is
what a person waits for (``import httpx`` alone is ~64 ms).

Where the daemon is (:func:`resolve_endpoint`), first match wins:

1. ``--socket`` / ``JOBD_SOCKET``: a Unix socket path;
2. ``--url`` / ``JOBD_URL`` (with ``--token`` / ``JOBD_TOKEN``): TCP;
3. ``[api] socket`` of the config (``--config`` / ``JOBD_CONFIG`` / the default path).
"""

from __future__ import annotations

import os
import sys

from jobd.client.jsonio import dumps, loads
from jobd.client.wire import Connection, Response, Target, TransportError, iter_lines, query, quote

# Annotations only: importing typing and pathlib costs the CLI's start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path
    from types import TracebackType
    from typing import Any

#: Seconds to wait for an answer. Generous: a cancel may wait for a step to stop.
DEFAULT_TIMEOUT = 120.0
#: Seconds to wait for a connection: a daemon that is not there should be said so quickly.
CONNECT_TIMEOUT = 5.0
#: An event stream is silent at most 15 s (keep-alive); longer means the daemon is gone.
STREAM_READ_TIMEOUT = 60.0
#: Where the packaged config lives (kept here so resolving it does not import jobd.config).
DEFAULT_CONFIG = "/etc/jobd/jobd.toml"


class DaemonUnreachable(Exception):
    """No daemon answers at the endpoint (CLI exit code 3). The message names where we looked,
    why that endpoint was chosen, and how to start the daemon."""


class ApiError(Exception):
    """The daemon answered with an error: ``status`` and the ``{code, message, details}`` shape."""

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details: dict[str, Any] = dict(details or {})


class Endpoint:
    """Where the daemon listens: a Unix socket path (kept as ``str``), or a URL with an
    optional bearer token.

    ``source`` says why this endpoint was chosen and ``config`` which config
    file the CLI would use; both only feed messages (not compared). A plain
    class, not a dataclass: ``dataclasses`` pulls in ``inspect`` and ``ast``,
    a tenth of the CLI's start-up.
    """

    __slots__ = ("config", "config_source", "socket", "source", "token", "url")

    def __init__(
        self,
        socket: str | os.PathLike[str] | None = None,
        url: str | None = None,
        token: str | None = None,
        *,
        source: str = "",
        config: str = DEFAULT_CONFIG,
        config_source: str = "the default",
    ) -> None:
        self.socket = None if socket is None else os.fspath(socket)
        self.url, self.token = url, token
        self.source, self.config, self.config_source = source, config, config_source

    def _key(self) -> tuple[str | None, str | None, str | None]:
        return (self.socket, self.url, self.token)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Endpoint) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Endpoint(socket={self.socket!r}, url={self.url!r})"

    def describe(self) -> str:
        """``unix socket P (from JOBD_SOCKET; config C, the default)``."""
        where = f"unix socket {self.socket}" if self.socket is not None else f"{self.url}"
        origin = f"from {self.source}; " if self.source else ""
        return f"{where} ({origin}config {self.config}, {self.config_source})"

    def start_hint(self) -> str:
        """How to get a daemon answering here (the second line of "cannot reach jobd")."""
        if self.socket is None:
            return (
                "is jobd running on that host with [api] listen set? Start it there with "
                "`jobd run --config PATH`, or point the CLI elsewhere with --url or --socket"
            )
        return (
            f"is the daemon running? Start it with `jobd run --config {self.config}` "
            f"(as a service: `systemctl start jobd`; from a checkout: `./scripts/demo`), "
            f"or point the CLI at it with --socket/JOBD_SOCKET or --url/JOBD_URL"
        )

    def target(self) -> Target:
        if self.socket is not None:
            return Target(unix=self.socket)
        return Target.from_url(self.url or "")


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
    config_path, config_from = _config_choice(config, env)
    if socket or env.get("JOBD_SOCKET"):
        origin = "--socket" if socket else "JOBD_SOCKET"
        return Endpoint(
            socket=socket or env["JOBD_SOCKET"],
            source=origin,
            config=config_path,
            config_source=config_from,
        )
    if url or env.get("JOBD_URL"):
        origin = "--url" if url else "JOBD_URL"
        chosen = (url or env["JOBD_URL"]).rstrip("/")
        secret = token or env.get("JOBD_TOKEN") or None
        return Endpoint(
            url=chosen, token=secret, source=origin, config=config_path, config_source=config_from
        )
    path, source = _configured_socket(config_path, config_from)
    return Endpoint(socket=path, source=source, config=config_path, config_source=config_from)


def _config_choice(config: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    """The config file the CLI uses, and where that choice came from."""
    if config:
        return config, "--config"
    if env.get("JOBD_CONFIG"):
        return env["JOBD_CONFIG"], "JOBD_CONFIG"
    return DEFAULT_CONFIG, "the default"


def _configured_socket(config_path: str, config_from: str) -> tuple[Path, str]:
    from pathlib import Path

    from jobd.config import ApiConfig, load_config
    from jobd.core.errors import JobdError

    path = Path(config_path).expanduser()
    default = ApiConfig().socket
    if config_from == "the default" and not path.exists():
        return default, "the packaged default: there is no config file"
    try:
        return load_config(path).api.socket, "its [api] socket"
    except (JobdError, OSError) as exc:
        print(
            f"jobd: warning: cannot read {path} to find the socket ({exc}); trying {default}",
            file=sys.stderr,
        )
        return default, "the packaged default: the config could not be read"


class Client:
    """A synchronous client for the daemon's API. Use as a context manager, or :meth:`close`.

    Every method returns the decoded JSON answer, raises :class:`ApiError` for
    an error answer and :class:`DaemonUnreachable` when nothing answers.
    Requests carry ``X-Jobd-Client: cli``: the job history then records ``cli:<user>``
    (the daemon learns the user from the kernel or the token, never from us).
    One connection is kept alive for the client's requests; each event stream
    opens one of its own.
    """

    def __init__(self, endpoint: Endpoint, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.headers = {"x-jobd-client": "cli", "user-agent": "jobd-cli", "accept": "*/*"}
        if endpoint.token:
            self.headers["authorization"] = f"Bearer {endpoint.token}"
        self._conn = self._connection(timeout)

    def _connection(self, timeout: float) -> Connection:
        try:
            target = self.endpoint.target()
        except TransportError as exc:
            raise self._unreachable(exc) from None
        return Connection(target, timeout=timeout, connect_timeout=CONNECT_TIMEOUT)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    # ------------------------------------------------------------------ transport

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request; the decoded JSON body (``None`` for 204). ``params``: the query (a
        list value repeats its key)."""
        headers = dict(self.headers)
        body = None
        if json_body is not None:
            body = dumps(json_body, ensure_ascii=False).encode()
            headers["content-type"] = "application/json"
        try:
            response = self._conn.request(method, _url(path, params), headers=headers, body=body)
        except TransportError as exc:
            raise self._unreachable(exc) from None
        return _decode(response)

    def _unreachable(self, exc: Exception) -> DaemonUnreachable:
        reason = str(exc) or type(exc).__name__
        return DaemonUnreachable(
            f"cannot reach jobd at {self.endpoint.describe()}: {reason}\n"
            f"jobd: {self.endpoint.start_hint()}"
        )

    # ------------------------------------------------------------------ routes

    def health(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/health"))

    def submit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/jobs", json_body=dict(body)))

    def submit_batch(self, bodies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``POST /v1/batch/jobs``: all or nothing; ``{"items": [job, ...]}`` in order."""
        return dict(self.request("POST", "/v1/batch/jobs", json_body={"jobs": list(bodies)}))

    def list_jobs(
        self,
        states: list[str] | None = None,
        limit: int | None = None,
        cursor: int | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/jobs``: ``filters`` are the list filters (``state`` a list, ``workflow``,
        ``asset``, ``resource``, ``since``, ``until``, ``search``)."""
        params: dict[str, Any] = {k: v for k, v in (filters or {}).items() if v}
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

    def operate_batch(
        self,
        operation: str,
        *,
        ids: Sequence[int] | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/batch/{operation}`` on ``ids`` or on every job ``filters`` match:
        ``{"done": [ids], "refused": [{"id", "error"}]}``."""
        body: dict[str, Any] = {"ids": list(ids)} if ids is not None else {}
        if filters is not None:
            body["filter"] = {k: v for k, v in filters.items() if v}
        return dict(self.request("POST", f"/v1/batch/{operation}", json_body=body))

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

    def schedule_control(self, name: str, action: str) -> dict[str, Any]:
        """``POST /v1/schedules/{name}/run|pause|resume``."""
        answer = self.request("POST", f"/v1/schedules/{quote(name, safe='')}/{action}")
        return dict(answer or {})

    def plugins(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/plugins"))

    def nodes(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/nodes"))

    def reload(self) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/reload"))

    def events(self, job_id: int | None = None, *, log_after: int | None = None) -> EventStream:
        """``with client.events() as events``: open ``GET /v1/events`` (``?job=ID``: that
        job's only) and iterate its events.

        When the ``with`` block is entered the daemon has subscribed (it
        subscribes before it answers), so reading a job's state inside the
        block and then iterating misses nothing. Each item is one event's
        JSON; the iterator ends when the daemon ends the stream. A lost
        connection raises :class:`DaemonUnreachable`. The stream has a
        connection of its own, so the client's other requests go on meanwhile.

        ``log_after`` (with ``job_id``): the job's log lines too, as ``kind: "log"``
        events, first those with ``seq > log_after`` already written, then each new one
        (``&log=true&after=N``, docs/api.md).
        """
        params: dict[str, Any] = {}
        if job_id is not None:
            params["job"] = job_id
        if log_after is not None:
            params.update(log="true", after=log_after)
        return EventStream(self, _url("/v1/events", params))

    def stream_events(self, job_id: int | None = None) -> Iterator[dict[str, Any]]:
        """Every event (of ``job_id`` only, if given) until the daemon ends the stream."""
        with self.events(job_id) as events:
            yield from events


class EventStream:
    """The context manager :meth:`Client.events` returns (a class, not ``contextmanager``:
    importing :mod:`contextlib` costs every command's start-up)."""

    __slots__ = ("_client", "_conn", "_path")

    def __init__(self, client: Client, path: str) -> None:
        self._client, self._path = client, path
        self._conn: Connection | None = None

    def __enter__(self) -> Iterator[dict[str, Any]]:
        client = self._client
        self._conn = conn = client._connection(STREAM_READ_TIMEOUT)
        try:
            response, chunks = conn.stream("GET", self._path, headers=client.headers)
            if response.status >= 400:
                response.body = b"".join(chunks)
                _decode(response)
        except TransportError as exc:
            conn.close()
            raise client._unreachable(exc) from None
        except BaseException:
            conn.close()
            raise
        return _unreachable_on_loss(client, parse_sse(iter_lines(chunks)))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            self._conn.close()
        if isinstance(exc, TransportError):
            raise self._client._unreachable(exc) from None


def _unreachable_on_loss(
    client: Client, events: Iterator[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """The events; a connection lost while iterating is "cannot reach jobd" too."""
    try:
        yield from events
    except TransportError as exc:
        raise client._unreachable(exc) from None


def _url(path: str, params: Mapping[str, Any] | None) -> str:
    if not params:
        return path
    return f"{path}?{query(params)}"


def _decode(response: Response) -> Any:
    """The JSON of a success; :class:`ApiError` built from the error shape otherwise."""
    status = response.status
    if status == 204 or not response.body:
        if status >= 400:
            raise ApiError(status, "http-error", f"HTTP {status}")
        return None
    try:
        payload = loads(response.body)
    except ValueError:
        raise ApiError(
            status, "bad-answer", f"HTTP {status}: the daemon's answer is not JSON"
        ) from None
    if status >= 400:
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            raise ApiError(status, "http-error", f"HTTP {status}")
        raise ApiError(
            status,
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
                yield loads("\n".join(data_lines))
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
