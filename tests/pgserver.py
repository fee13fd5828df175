"""A real PostgreSQL server for the tests, and a fresh database per test.

Which server: the one named by ``JOBD_TEST_PG_URL`` (a libpq URL of a role that may
create databases); else the local server on ``localhost:5432`` when one answers (these
machines run PostgreSQL 15 there with trust authentication); else a throwaway server
of our own, made with Debian's ``initdb``/``pg_ctl`` in a temporary folder (the
``postgresql`` package is installed with apt-get when missing and we are root). The
tests never skip for want of a server: where none can be had, they fail saying why.

A test's fresh database (the ``pg_url`` fixture, tests/conftest.py) is a copy of one that
the store migrated once per test process (:func:`migrated_template`); ``pg_empty_url``
and :func:`fresh_database` without a template give an empty one (the tests of migrations
from nothing or from an older schema).
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import psycopg

ENV = "JOBD_TEST_PG_URL"
LOCAL = "postgresql://postgres@localhost:5432/postgres"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _install() -> Path:
    bindir = _binaries()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"no PostgreSQL for the tests: set {ENV}, run a server on localhost:5432, "
            "or install Debian's postgresql package (initdb and pg_ctl)"
        )
    # The suite's worker processes (pytest-xdist) may all get here at once; apt-get
    # refuses to run beside itself, so one installs while the others wait for it.
    with open(os.path.join(tempfile.gettempdir(), "jobd-pg-install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _binaries() is None:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True)
    bindir = _binaries()
    if bindir is None:
        raise RuntimeError("apt-get installed postgresql but no initdb was found")
    return bindir


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def throwaway_server() -> Iterator[str]:
    """A server of our own on a Unix socket in a temporary folder; stopped and removed after."""
    bindir = _install()
    folder = Path(tempfile.mkdtemp(prefix="jobd-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
        subprocess.run(_as_postgres([*initdb, "-E", "UTF8"]), check=True, capture_output=True)
        opts = f"-k {folder} -c listen_addresses='' -c fsync=on"
        ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-o", opts]
        subprocess.run(_as_postgres([*ctl, "-w", "start"]), check=True, capture_output=True)
        try:
            yield f"postgresql://postgres@/postgres?host={folder}"
        finally:
            stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            subprocess.run(_as_postgres(stop), check=False, capture_output=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def server() -> Iterator[str]:
    """The URL of a server's maintenance database (see the module's docstring)."""
    named = os.environ.get(ENV)
    if named:
        yield named
    elif _answers(LOCAL):
        yield LOCAL
    else:
        with throwaway_server() as url:
            yield url


def with_database(url: str, name: str) -> str:
    """``url`` (a ``postgresql://`` URL, as ``[daemon] database`` takes) with its database
    replaced by ``name``."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise RuntimeError(f"{ENV} must be a postgresql:// URL, got {url!r}")
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextmanager
def fresh_database(server_url: str, template: str | None = None) -> Iterator[str]:
    """A new database on the server, dropped afterwards (even with connections left): empty,
    or a copy of the database ``template`` (``CREATE DATABASE ... TEMPLATE``, which needs
    no session on the template meanwhile: :func:`migrated_template`'s has none)."""
    name = f"jobd_test_{uuid.uuid4().hex[:12]}"
    copy = "" if template is None else f' TEMPLATE "{template}"'
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')  # type: ignore[arg-type]  # our names
    try:
        yield with_database(server_url, name)
    finally:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(server_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
                break
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise


@contextmanager
def migrated_template(server_url: str) -> Iterator[str]:
    """The name of a new database that the PostgreSQL store itself migrated from empty to
    this jobd's schema (``open_store``, then closed: no session is left on it), holding no
    row of any test; dropped afterwards. A copy of it is what a fresh database would be
    once a store opened it, without each test paying for the migrations."""
    with fresh_database(server_url) as url:
        with ThreadPoolExecutor(1) as thread:  # its own event loop, whatever runs here
            thread.submit(anyio.run, _open_and_close, url).result()
        yield urlsplit(url).path[1:]


async def _open_and_close(url: str) -> None:
    from jobd.store.postgres import open_store

    async with open_store(url):
        pass
