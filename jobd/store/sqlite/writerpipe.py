"""The daemon's end of the writer process (:mod:`.sqlwriter`): frames over its two pipes.

The answers are read by a protocol, not by a task: each frame is handed to a callback
(the store resolves that batch's callers) in the event loop's read callback itself. A
task awaiting ``StreamReader.readexactly`` twice per batch, woken through an event and
behind a lock, cost a lone commit more of the loop's CPU than the rest of its round trip
(docs/performance.md, "Per-request cost, again").
"""

from __future__ import annotations

import asyncio
import pickle
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
import structlog

from jobd.core.errors import StoreError
from jobd.store.sqlite import sqlwriter

if TYPE_CHECKING:
    from jobd.store.sqlite.units import Unit

log = structlog.get_logger("jobd.store")

_HEADER = sqlwriter.HEADER
_loads = pickle.loads


class _Pipes(asyncio.SubprocessProtocol):
    """Frames from the writer's stdout, in order, to :attr:`on_frame`; once its stdout is
    at its end and the process has exited, :attr:`on_exit` with its exit status."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.on_frame: Callable[[Any], None] = self._first
        self.on_exit: Callable[[int | None], None] | None = None
        loop = asyncio.get_running_loop()
        #: The first frame (``ready`` or ``error``), or None if the writer exited first.
        self.first: asyncio.Future[Any] = loop.create_future()
        #: Set once the process has exited and its stdout is at its end.
        self.gone: asyncio.Future[int | None] = loop.create_future()
        self.transport: asyncio.SubprocessTransport | None = None
        self._eof = False
        self._exited = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.SubprocessTransport, transport)

    def _first(self, frame: Any) -> None:
        if not self.first.done():
            self.first.set_result(frame)

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        if fd != 1:
            return
        buf = self.buf
        buf += data
        used, have = 0, len(buf)
        while have - used >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buf, used)
            end = used + _HEADER.size + size
            if have < end:
                break
            frame = _loads(buf[used + _HEADER.size : end])
            used = end
            self.on_frame(frame)
        if used:
            del buf[:used]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._eof = True
            self._maybe_gone()

    def process_exited(self) -> None:
        self._exited = True
        self._maybe_gone()

    def _maybe_gone(self) -> None:
        # Both: every answer written before the exit has been read (the exit may be seen
        # before the last bytes of the pipe are), and the exit status is known.
        if not (self._eof and self._exited) or self.gone.done():
            return
        code = None if self.transport is None else self.transport.get_returncode()
        if not self.first.done():
            self.first.set_result(None)
        self.gone.set_result(code)
        if self.on_exit is not None:
            self.on_exit(code)


class Writer:
    """The writer process: :meth:`send` a batch; its answer goes to the ``on_frame`` given
    to :meth:`attach`, and the process' end to ``on_exit``."""

    def __init__(self, path: Path, transport: asyncio.SubprocessTransport, pipes: _Pipes):
        self.path = path
        self.pid: int = transport.get_pid()
        self._transport, self._pipes = transport, pipes
        # uvloop's pipe transports are not asyncio.WriteTransport's subclasses; they write.
        stdin = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))
        self._stdin = stdin
        #: What a frame is written with (a benchmark records the frames here).
        self._write: Callable[[bytes], None] = stdin.write

    @classmethod
    async def start(
        cls,
        path: Path,
        synchronous: str,
        version: int,
        *,
        index_at: int = sqlwriter.INDEX_AT,
        index_idle: float = sqlwriter.INDEX_IDLE,
    ) -> Writer:
        """The writer process, ready. New jobs' names go into the search index once
        ``index_at`` wait, or after ``index_idle`` seconds without a write (``sqlwriter.Names``)."""
        schema = resources.files("jobd.store.sqlite").joinpath("sql/schema.sql")
        loop = asyncio.get_running_loop()
        # -I -S: the writer needs only the standard library, and starts faster without site.
        transport, pipes = await loop.subprocess_exec(
            _Pipes,
            sys.executable,
            "-I",
            "-S",
            sqlwriter.__file__,
            str(path),
            synchronous,
            str(schema),
            str(version),
            str(sqlwriter.LOCK_WAIT),
            str(index_at),
            str(index_idle),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
        )
        writer = cls(path, transport, pipes)
        try:
            first = await pipes.first
        except BaseException:
            await writer.close()
            raise
        if first is None or first[0] != "ready":
            await writer.close()
            raise StoreError(str(first[1]) if first else writer.exited(pipes.gone.result()))
        return writer

    def attach(
        self, on_frame: Callable[[Any], None], on_exit: Callable[[int | None], None]
    ) -> None:
        """Where the answers go from now on, and who is told when the process is gone."""
        self._pipes.on_frame, self._pipes.on_exit = on_frame, on_exit
        if self._pipes.gone.done():
            on_exit(self._pipes.gone.result())

    async def wait_gone(self) -> None:
        """Return once the process has exited (and every answer it wrote was handed on)."""
        await asyncio.shield(self._pipes.gone)

    def exited(self, code: int | None) -> str:
        return f"the database writer process for {self.path} exited (exit status {code})"

    def send(self, units: list[Unit]) -> None:
        """One batch, answered by one frame to ``on_frame``. Never waits (no drain): what is
        sent is bounded by the units whose callers wait, and waiting for the writer to read
        here while it waits for us to read its answers could deadlock the two."""
        self._write(
            sqlwriter.encode_frame(
                [(u.statements, u.guarded, u.appended, u.ordered) for u in units]
            )
        )

    async def close(self) -> None:
        """End of input: the writer finishes and exits (killed if it has not in 30 s)."""
        with anyio.CancelScope(shield=True):
            try:
                if not self._pipes.gone.done():
                    self._stdin.close()
                    with anyio.move_on_after(30):
                        await self._pipes.gone
                        return
                    log.error("the database writer did not exit; killing it", pid=self.pid)
                    self._transport.kill()
                    await self._pipes.gone
            finally:
                self._transport.close()
