r"""Crontab's day-of-week field in APScheduler 3's numbering (pure string work).

crontab(5) counts ``0`` (and ``7``) as Sunday; APScheduler 3 counts ``0`` as Monday
(its issue #286). :func:`apscheduler_dow` translates a whole field, so ``1-5`` stays
Monday to Friday and ``0`` stays Sunday; :mod:`jobd.plan.timers` builds its
``CronTrigger``\ s with it.
"""

from __future__ import annotations

_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _dow_value(token: str) -> int:
    """A crontab day of week (``0``-``7`` or a name) as 0=Sunday .. 6=Saturday."""
    if token.lower() in _DOW_NAMES:
        return _DOW_NAMES.index(token.lower())
    if not token.isdigit() or int(token) > 7:
        raise ValueError(f"bad day of week {token!r} (0-7 or sun-sat)")
    return int(token) % 7


def _dow_days(element: str) -> set[int]:
    """One comma element of a crontab day-of-week field (``*``, ``a``, ``a-b``, ``/step``)."""
    base, _, step_text = element.partition("/")
    step = int(step_text) if step_text else 1
    if step < 1:
        raise ValueError(f"bad step in day of week {element!r}")
    if base == "*":
        first, last = 0, 6
    elif "-" in base:
        low, high = base.split("-", 1)
        first, last = _dow_value(low), _dow_value(high)
        last = 7 if high.strip() == "7" else last  # "5-7" is Friday to Sunday
        if last < first:
            raise ValueError(f"bad day-of-week range {element!r}")
    else:
        first = _dow_value(base)
        last = 6 if step_text else first  # "a/n" means "a to the end, every n"
    return {d % 7 for d in range(first, last + 1, step)}


def apscheduler_dow(field: str) -> str:
    """Translate a crontab day-of-week field to APScheduler 3 numbers (0=Monday)."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for element in field.split(","):
        days |= _dow_days(element.strip())
    return ",".join(str(d) for d in sorted((day + 6) % 7 for day in days))
