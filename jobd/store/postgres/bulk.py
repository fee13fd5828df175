"""The hot path's batches, grouped by statement for ``jobd_apply_bulk`` (``sql/migrate-4.sql``).

``jobd_apply`` runs a batch statement by statement (one executor run each, ~10 per no-op
job): the writer's transaction is most of a node's time. Most batches, though, are only
submissions and the transitions of running jobs; such a batch can be applied as ONE
statement per kind (all job inserts, all step inserts, all guarded transitions, ...) with
the same outcome, when nothing in it depends on the order between units beyond "a job's
insert before its change". :func:`group` says whether a batch is such a batch, and if so
returns its statements grouped; every other batch goes through ``jobd_apply`` unchanged.

A batch qualifies when every unit is either

* an **insert unit**: only ``insert_job``, ``insert_step`` and ``history``, with at least
  one ``insert_job``, none of a job already inserted or changed earlier in the batch; or
* a **change unit**: only a guarding ``transition`` (first, at most one), ``history`` and
  ``record_step``, all about one job that no earlier change unit of the batch touched,
  and no step recorded twice;

and empty units (``Store.flush``) are left out (they have no statements to fail).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobd.store.postgres.units import PgUnit

#: The argument (index in the statement list) that names the job, per statement.
_INSERT_OPS = {"insert_job": 1, "insert_step": 1, "history": 1}
_CHANGE_OPS = {"transition": 7, "history": 1, "record_step": 8}


def group(units: Sequence[PgUnit]) -> dict[str, list[Any]] | None:
    """``jobd_apply_bulk``'s argument for ``units``, or None when the batch must go through
    ``jobd_apply`` (see the module's docstring for when)."""
    out: dict[str, list[Any]] = {"j": [], "s": [], "t": [], "h": [], "r": []}
    inserted: set[int] = set()
    changed: set[int] = set()
    for i, unit in enumerate(units):
        stmts = unit.statements
        if not stmts or unit.locking is not None:
            if stmts:
                return None
            continue
        if stmts[0][0] in ("insert_job", "insert_step") or (
            stmts[0][0] == "history" and any(s[0] == "insert_job" for s in stmts)
        ):
            if not _insert_unit(i, stmts, inserted, changed, out):
                return None
        elif not _change_unit(i, stmts, changed, out):
            return None
    return out


def _insert_unit(
    i: int, stmts: list[list[Any]], inserted: set[int], changed: set[int], out: dict[str, Any]
) -> bool:
    for s in stmts:
        op = s[0]
        if op not in _INSERT_OPS:
            return False
        if op == "insert_job":
            job = s[1]
            if job in inserted or job in changed:
                return False
            inserted.add(job)
            out["j"].append(s)
        elif op == "insert_step":
            out["s"].append(s)
        else:
            out["h"].append([i, s])
    return True


def _change_unit(i: int, stmts: list[list[Any]], changed: set[int], out: dict[str, Any]) -> bool:
    first = stmts[0]
    pos = _CHANGE_OPS.get(first[0])
    if pos is None:
        return False
    job = first[pos]
    if job in changed:
        return False
    steps: set[Any] = set()
    for n, s in enumerate(stmts):
        op = s[0]
        pos = _CHANGE_OPS.get(op)
        if pos is None or s[pos] != job or (op == "transition" and n > 0):
            return False
        if op == "record_step":
            if s[9] in steps:
                return False
            steps.add(s[9])
            out["r"].append([i, s])
        elif op == "history":
            out["h"].append([i, s])
        else:
            out["t"].append([i, s])
    changed.add(job)
    return True
