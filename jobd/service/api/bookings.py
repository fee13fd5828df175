"""The plan's resources: ``GET /v1/resources`` and ``GET /v1/bookings`` (the timeline's
reservations between two times)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

from jobd.core.errors import ValidationError
from jobd.service.api.bodies import field_time
from jobd.service.api.shapes import items
from jobd.service.authz import VIEWER
from jobd.service.web.compact import booking_columns, booking_resources

if TYPE_CHECKING:
    from jobd.engine import Engine


def add_booking_routes(app: FastAPI, engine: Engine) -> None:
    """``GET /v1/resources``, ``GET /v1/bookings``."""

    @app.get("/v1/resources", dependencies=[VIEWER])
    async def resources() -> dict[str, Any]:
        return items(await engine.resources_info())

    @app.get("/v1/bookings", dependencies=[VIEWER])
    async def bookings(
        start: Annotated[str | None, Query(alias="from", max_length=100)] = None,
        end: Annotated[str | None, Query(alias="to", max_length=100)] = None,
        resource: Annotated[
            list[str] | None, Query(description="only these resources; repeatable or a,b")
        ] = None,
        form: Annotated[
            Literal["items", "columns"],
            Query(description="items (SPEC §2) or columns: the timeline's compact form"),
        ] = "items",
    ) -> JSONResponse:
        """``form=columns``: each job once, times as Unix ms (docs/api.md)."""
        lo, hi = field_time("from", start), field_time("to", end)
        if lo is not None and hi is not None and hi < lo:
            raise ValidationError("to: must not be before from", field="to")
        found = await engine.bookings(lo, hi, booking_resources(resource))
        # A JSONResponse skips FastAPI's jsonable_encoder walk: a timeline asks for 10,000.
        if form == "columns":
            return JSONResponse(booking_columns(found))
        return JSONResponse(items(found))
