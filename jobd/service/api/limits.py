"""The API's sizes and bounds (SPEC §7), shared by its middlewares and routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path as PathParam

#: Largest request body accepted (413 above it).
MAX_BODY = 1024 * 1024
#: Most jobs or ids in one batch request (413 above it).
MAX_BATCH = 10_000
#: Largest body of ``POST /v1/batch/jobs``: 10,000 jobs of about 1.6 KB each.
MAX_BATCH_BODY = 16 * 1024 * 1024
#: Bodies allowed above :data:`MAX_BODY`, by path.
BODY_LIMITS = {"/v1/batch/jobs": MAX_BATCH_BODY}
#: Seconds between SSE keep-alive comments on a quiet stream.
SSE_KEEPALIVE = 15.0
#: Largest id SQLite can hold; bigger path/query ids are bad input, not a database overflow.
MAX_ID = 2**63 - 1

JobId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
