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

A change unit's transition of a job *inserted in the same batch*, from the state it is
inserted in, is **folded** into the insert: the job is inserted in the transition's target
state (its ``updated_at``, and the error or due time the transition sets), and no UPDATE
follows. It is the same row at the commit, one heap tuple and one set of index entries
fewer: a job submitted due now is picked by a worker before its insert has committed
("enqueue before commit", :mod:`jobd.engine.admission`), so its move to ``running`` or
``waiting-for-lock`` usually shares its insert's batch. The guard cannot fail there (the
insert is in the same transaction, and no earlier change unit touched the job); its
history rows are written as before, so the job's history still says ``queued`` first. A
move out of a state a node holds a job in is not folded: its UPDATE keeps ``jobs.node``,
which the insert names for a held job only.

A batch with asset-lock statements goes through ``jobd_apply_locked`` (their assets'
advisory locks first), or, when :func:`split` finds units that may go ahead of its lock
statements, through ``jobd_apply_split``: those grouped as above, then the rest in order.
A unit that moves a job to ``waiting-for-lock`` with its request is first parted by
:func:`divide` (the move goes ahead with the other transitions; the request follows it,
``jobd_apply_split``'s ``deps``). :func:`plan` picks the statement for a batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import psycopg

from jobd.store.postgres import queries as q
from jobd.store.postgres.units import PgUnit

#: A batch's JSON, by orjson: a seventh of the standard library encoder's CPU on the hot
#: path's batches (most of it was spelling floats). NaN and infinities, which jsonb has no
#: words for, would come out as ``null``: jobd writes none (times come from clocks, a
#: step's progress is clamped to 0-100, the API and configuration refuse them).
_encode = orjson.dumps
#: What orjson refuses (an integer beyond 64 bits), by the standard library's encoder.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def payload(batch: Any) -> str:
    """``batch`` as the JSON text of ``jobd_apply``'s (or ``jobd_apply_bulk``'s) argument."""
    try:
        return _encode(batch).decode()
    except orjson.JSONEncodeError:
        pass
    try:
        return _JSON.encode(batch)
    except ValueError as exc:  # not JSON at all
        raise psycopg.DataError(str(exc)) from exc


#: The argument (index in the statement list) that names the job, per statement.
_INSERT_OPS = {"insert_job": 1, "insert_step": 1, "history": 1}
_CHANGE_OPS = {"transition": 7, "history": 1, "record_step": 8}


def group(units: Sequence[PgUnit]) -> dict[str, list[Any]] | None:
    """``jobd_apply_bulk``'s argument for ``units``, or None when the batch must go through
    ``jobd_apply`` (see the module's docstring for when)."""
    grouping = _Grouping()
    for i, unit in enumerate(units):
        stmts = unit.statements
        if not stmts or unit.locking is not None:
            if stmts:
                return None
            continue
        if stmts[0][0] in ("insert_job", "insert_step") or (
            stmts[0][0] == "history" and any(s[0] == "insert_job" for s in stmts)
        ):
            if not grouping.insert_unit(i, stmts):
                return None
        elif not grouping.change_unit(i, stmts):
            return None
    return grouping.out


class _Grouping:
    """A batch's statements grouped so far: ``out`` (``jobd_apply_bulk``'s argument), the
    jobs inserted (each with its insert's place in ``out["j"]``) and the jobs changed."""

    def __init__(self) -> None:
        self.out: dict[str, list[Any]] = {"j": [], "s": [], "t": [], "h": [], "r": []}
        self.inserted: dict[int, int] = {}
        self.changed: set[int] = set()

    def insert_unit(self, i: int, stmts: list[list[Any]]) -> bool:
        out = self.out
        for s in stmts:
            op = s[0]
            if op not in _INSERT_OPS:
                return False
            if op == "insert_job":
                job = s[1]
                if job in self.inserted or job in self.changed:
                    return False
                self.inserted[job] = len(out["j"])
                out["j"].append(s)
            elif op == "insert_step":
                out["s"].append(s)
            else:
                out["h"].append([i, s])
        return True

    def change_unit(self, i: int, stmts: list[list[Any]]) -> bool:
        out, first = self.out, stmts[0]
        pos = _CHANGE_OPS.get(first[0])
        if pos is None:
            return False
        job = first[pos]
        if job in self.changed:
            return False
        # Folded into its insert now: if the unit proves ungroupable, so is the batch.
        folded = first[0] == "transition" and _fold(first, self.inserted.get(job), out["j"])
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
            elif not folded:
                out["t"].append([i, s])
        self.changed.add(job)
        return True


#: Places in an ``insert_job`` statement (``codec.job_row`` after the op) and in a
#: ``transition`` (``PgUnit.transition``).
_J_STATE, _J_DUE, _J_ERROR, _J_UPDATED = 4, 9, 10, 13
_T_TO, _T_AT, _T_SET_ERROR, _T_ERROR, _T_SET_DUE, _T_DUE, _T_FROM = 1, 2, 3, 4, 5, 6, 8
#: The states in which a job is held by a node (``jobd_apply_bulk``'s insert names it).
_HELD = ("queued", "waiting-for-lock", "running", "cancel-requested")


def _fold(transition: list[Any], place: int | None, inserts: list[list[Any]]) -> bool:
    """Fold ``transition`` into its job's insert at ``inserts[place]`` (a copy: the unit's
    own statements stay as they are) when the job is inserted in the state the transition
    moves it from; True when folded (see the module's docstring)."""
    if place is None or inserts[place][_J_STATE] != transition[_T_FROM]:
        return False
    if transition[_T_FROM] in _HELD and transition[_T_TO] not in _HELD:
        # The insert names the writing node for a held job only; an UPDATE out of a held
        # state keeps it (jobs.node: the node the job was last with). Not folded, so that
        # the row is the one the UPDATE leaves.
        return False
    row = list(inserts[place])
    row[_J_STATE], row[_J_UPDATED] = transition[_T_TO], transition[_T_AT]
    if transition[_T_SET_ERROR]:
        row[_J_ERROR] = transition[_T_ERROR]
    if transition[_T_SET_DUE]:
        row[_J_DUE] = transition[_T_DUE]
    inserts[place] = row
    return True


#: The lock statements after which a job's later units must wait (they put a start back).
_PUT_BACK = ("lock_withdraw", "lock_unstart")


def split(units: Sequence[PgUnit]) -> tuple[list[int], list[int]] | None:
    """For a batch with lock statements: the units that may be applied ahead of it, in
    ``jobd_apply_bulk``'s way (their indexes), and the others, applied after in batch order;
    None when none may go ahead (or they cannot be grouped).

    A unit without lock statements goes ahead unless it is about a job whose start an
    earlier lock statement of the batch puts back (its transition expects the job
    ``waiting-for-lock`` again). What goes ahead never needs a lock statement before it: a
    job's lock statements need its earlier units only (its insert: ahead is before), a
    release does not order its job's outcome, and a grant starts only a job that waits
    (whose node writes nothing else for it but lock statements until the start is its)."""
    ahead: list[int] = []
    after: list[int] = []
    put_back: set[Any] = set()
    for i, unit in enumerate(units):
        stmts = unit.statements
        if unit.locking is not None:
            after.append(i)
            put_back.update(s[1] for s in stmts if s[0] in _PUT_BACK)
        elif put_back and any(_job_of(s) in put_back for s in stmts):
            after.append(i)
        else:
            ahead.append(i)
    if not any(units[i].statements for i in ahead) or group([units[i] for i in ahead]) is None:
        return None
    return ahead, after


def _job_of(statement: list[Any]) -> Any:
    pos = _CHANGE_OPS.get(statement[0]) or _INSERT_OPS.get(statement[0])
    return None if pos is None else statement[pos]


#: What may lead a unit with lock statements that :func:`divide` parts: its guarded
#: transition first, then history rows; its lock statements: requests only.
_LEADS = ("transition", "history")
_DIVIDED_LOCKS = ("lock_request",)


def divide(units: Sequence[PgUnit]) -> tuple[list[PgUnit], list[int], list[int]] | None:
    """``units`` with each request unit parted in two: its transition and history (no lock
    statement: it may go ahead, set-based), then its lock requests, which depend on it; the
    units' origins (each part's index in ``units``) and, per part, the index of the part it
    depends on (-1: none). None when no unit may be parted.

    A unit is parted when it is a job's move to ``waiting-for-lock`` with its request (a
    guarded transition, history, ``lock_request``) and no earlier unit of the batch names
    the job in a lock statement: then nothing of the batch needs its transition after
    anything but the job's own insert (which goes ahead too, and first). Its request still
    follows its transition (ahead is before) and is skipped when the transition's guard
    fails (``jobd_apply_split``'s ``deps``)."""
    out: list[PgUnit] = []
    origin: list[int] = []
    deps: list[int] = []
    locked_jobs: set[Any] = set()
    for i, unit in enumerate(units):
        stmts = unit.statements
        lead = [s for s in stmts if s[0] in _LEADS]
        rest = [s for s in stmts if s[0] not in _LEADS]
        if _parts_in_two(unit, lead, rest, locked_jobs):
            first, second = PgUnit(), PgUnit()
            first.statements, second.statements = lead, rest
            second.locking = unit.locking
            out += [first, second]
            origin += [i, i]
            deps += [-1, len(out) - 2]
        else:
            out.append(unit)
            origin.append(i)
            deps.append(-1)
        if unit.locking is not None:
            locked_jobs.update(s[1] for s in stmts if s[0].startswith("lock_"))
    return None if len(out) == len(units) else (out, origin, deps)


def _parts_in_two(unit: PgUnit, lead: list[Any], rest: list[Any], locked_jobs: set[Any]) -> bool:
    """Whether :func:`divide` parts ``unit`` (``lead``: its transition and history, ``rest``:
    its other statements): a guarded move with history rows and only its own job's lock
    requests, for a job no earlier lock statement of the batch names."""
    if unit.locking is None or not lead or lead[0][0] != "transition" or not rest:
        return False
    job = _job_of(lead[0])
    return (
        unit.statements[0] is lead[0]
        and all(s[0] == "history" for s in lead[1:])
        and all(s[0] in _DIVIDED_LOCKS and s[1] == job for s in rest)
        and job not in locked_jobs
    )


def plan(units: Sequence[PgUnit], encode: Callable[[Any], str]) -> tuple[str, list[Any], list[int]]:
    """The statement that applies ``units``, its parameters (the batch ``encode``d), and the
    order of the units its answer's indexes count in (``jobd_apply*`` answer with the
    indexes of the units whose guard matched no row)."""
    order = list(range(len(units)))
    locking = [unit.locking for unit in units if unit.locking is not None]
    if not locking:
        grouped = group(units)
        if grouped is None:
            return q.APPLY, [encode([unit.statements for unit in units])], order
        return q.APPLY_BULK, [encode(grouped)], order
    assets = sorted({a for lk in locking for a in lk[0]})
    jobs = sorted({j for lk in locking for j in lk[1]})
    nodes = sorted({n for lk in locking for n in lk[2]})
    parted = divide(units)
    if parted is not None and (parts := split(parted[0])) is not None:
        (pieces, origin, deps), (ahead, after) = parted, parts
        place = {k: n for n, k in enumerate(ahead)}
        if all(deps[i] < 0 or deps[i] in place for i in after):
            grouped = group([pieces[i] for i in ahead])
            later = encode([pieces[i].statements for i in after])
            on = [place[deps[i]] if deps[i] >= 0 else -1 for i in after]
            params = [encode(grouped), len(ahead), later, on, assets, jobs, nodes]
            return q.APPLY_SPLIT_DEPS, params, [origin[i] for i in ahead + after]
    parts = split(units)
    if parts is None:
        return q.APPLY_LOCKED, [encode([u.statements for u in units]), assets, jobs, nodes], order
    ahead, after = parts
    grouped = group([units[i] for i in ahead])
    later = encode([units[i].statements for i in after])
    return q.APPLY_SPLIT, [encode(grouped), len(ahead), later, assets, jobs, nodes], ahead + after
