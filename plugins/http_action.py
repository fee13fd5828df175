"""Shipped plugin: the ``http`` action makes one HTTP request; a non-2xx answer fails it.

Params: ``url`` (http or https), ``method`` (default GET), ``headers`` (map),
``json`` (a body sent as JSON), ``timeout`` (seconds, default 30).
Outputs: ``status`` and ``body``: the parsed JSON when the answer says it is
JSON, else the text; at most 64 KiB are read (a longer body is returned as
truncated text).
"""

from __future__ import annotations

import json as jsonlib
from typing import Any

import httpx

import jobd

BODY_LIMIT = 64 * 1024
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _url(url: Any) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise jobd.ActionError(f"http: 'url' must be an http:// or https:// URL, not {url!r}")
    return url


def _method(method: Any) -> str:
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise jobd.ActionError(f"http: 'method' must be one of {', '.join(sorted(METHODS))}")
    return method.upper()


def _headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, dict) or not all(isinstance(key, str) for key in headers):
        raise jobd.ActionError("http: 'headers' must be a map of header names to values")
    return {key: str(value) for key, value in headers.items()}


def _timeout(timeout: Any) -> float:
    # Templated params arrive as strings: "30" is as good as 30.
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        raise jobd.ActionError(
            f"http: 'timeout' must be a number of seconds, not {timeout!r}"
        ) from None
    if seconds <= 0:
        raise jobd.ActionError("http: 'timeout' must be positive")
    return seconds


async def _read_limited(response: httpx.Response) -> tuple[bytes, bool]:
    """At most BODY_LIMIT bytes of the body, and whether there was more."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > BODY_LIMIT:
            return bytes(body[:BODY_LIMIT]), True
    return bytes(body), False


def _decode(response: httpx.Response, raw: bytes, truncated: bool) -> Any:
    text = raw.decode(response.encoding or "utf-8", errors="replace")
    if not truncated and "json" in response.headers.get("content-type", ""):
        try:
            return jsonlib.loads(text)
        except ValueError:
            pass  # says JSON but is not: keep the text rather than fail a 2xx answer
    return text


async def run(
    ctx: jobd.ActionContext,
    url: Any = None,
    method: Any = "GET",
    headers: Any = None,
    json: Any = None,
    timeout: Any = 30,  # noqa: ASYNC109 - the action's documented param
) -> dict[str, Any]:
    """Send the request; return ``status`` and ``body``; raise ActionError unless 2xx."""
    request = {"method": _method(method), "url": _url(url), "headers": _headers(headers)}
    if json is not None:
        request["json"] = json
    try:
        async with (
            httpx.AsyncClient(timeout=_timeout(timeout)) as client,
            client.stream(**request) as response,
        ):
            raw, truncated = await _read_limited(response)
    except httpx.HTTPError as exc:
        raise jobd.ActionError(f"http: {request['method']} {url} failed: {exc!r}") from exc
    body = _decode(response, raw, truncated)
    ctx.log.info("http answer", url=url, status=response.status_code, truncated=truncated)
    if not response.is_success:
        snippet = raw[:200].decode("utf-8", errors="replace")
        raise jobd.ActionError(
            f"http: {request['method']} {url} answered {response.status_code}: {snippet}",
            {"status": response.status_code, "body": body},
        )
    return {"status": response.status_code, "body": body}


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [
        jobd.Action(
            "http",
            run,
            "Make an HTTP request; fails unless the answer is 2xx",
            params=(
                jobd.Param("url", "string", required=True, description="http:// or https://"),
                jobd.Param("method", "string", choices=tuple(sorted(METHODS)), description="GET"),
                jobd.Param("headers", "map", description="header names to values"),
                jobd.Param("json", "any", description="a body sent as JSON"),
                jobd.Param("timeout", "number", description="seconds, default 30"),
            ),
        )
    ]
