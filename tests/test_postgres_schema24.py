"""Schema 24 (``sql/migrate-24.sql``) on a real PostgreSQL: a batch of lock requests writes
each asset row with its own request's ``seq``, in the batch's order, and without a join over
every pair of the batch's requests and asset rows (the cost that grew with the square of the
requests a batch holds, once a run queue's waiters asked at once: session 16)."""

from __future__ import annotations

from jobd.store.postgres.units import PgUnit
from tests.pgschema import Conn, apply, explained, held, migrate, node, schema_at, waiting_job

#: Jobs asking in one batch; each wants one of three assets alone and ``s`` shared.
N = 120


def _requests(a: Conn) -> None:
    for job_id in range(1, N + 1):
        waiting_job(a, job_id)
    units = [PgUnit().lock_request(j, "a", (f"x{j % 3}",), ("s",), 1.0) for j in range(1, N + 1)]
    assert apply(a, *units) == []


def test_a_batch_of_requests_keeps_its_order_and_each_assets_seq(pg_empty_url: str) -> None:
    url = pg_empty_url
    schema_at(url, 23)
    migrate(url)
    with node(url, "a") as a:
        _requests(a)
        seqs = dict(a.execute("SELECT job_id, seq FROM lock_requests").fetchall())
        assets = a.execute("SELECT job_id, asset, seq, exclusive FROM lock_assets").fetchall()
        grants = held(a)
    assert sorted(seqs, key=seqs.__getitem__) == list(range(1, N + 1))  # the batch's order
    assert len(assets) == 2 * N
    assert all(seq == seqs[job] for job, _, seq, _ in assets)
    assert {(job, asset, excl) for job, asset, _, excl in assets} == {
        (j, a, e) for j in range(1, N + 1) for a, e in ((f"x{j % 3}", True), ("s", False))
    }
    # The first asker of each exclusive asset holds it (s is shared by all); the rest wait.
    assert sorted(j for j, granted in grants.items() if granted) == [1, 2, 3]


def test_the_requests_asset_rows_are_written_without_a_join_over_pairs(
    pg_empty_url: str,
) -> None:
    url = pg_empty_url
    schema_at(url, 23)
    migrate(url)
    with node(url, "a") as a:
        plans = explained(a, analyze=True)
        _requests(a)
    written = [p for p in plans if "INSERT INTO lock_assets" in p and "Insert on lock_assets" in p]
    assert len(written) == 1, plans
    # Schema 23 joined the requests' rows to their assets' by a nested loop over every pair:
    # "Rows Removed by Join Filter: 28560" for 120 requests of two assets.
    assert "Rows Removed by Join Filter" not in written[0], written[0]
