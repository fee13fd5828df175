"""The tests' own PostgreSQL (tests/pgserver.py): a throwaway server works where none runs."""

from __future__ import annotations

import psycopg

from tests import pgserver


def test_a_throwaway_server_starts_serves_a_fresh_database_and_goes() -> None:
    with pgserver.throwaway_server() as url:
        with pgserver.fresh_database(url) as db, psycopg.connect(db) as conn:
            row = conn.execute("SELECT current_database()").fetchone()
            assert row is not None and row[0].startswith("jobd_test_")
        with psycopg.connect(url) as conn:
            names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
            assert not [n for n in names if n.startswith("jobd_test_")]  # dropped after use
    assert not pgserver._answers(url)  # stopped
