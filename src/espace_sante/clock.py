"""The service's calendar: every date it decides or shows (a notice's opening day, the opposition window, a
suspension's six weeks, an archive's ten years, a minor's 18th birthday, "ouvert depuis le …") is a day in
France, whatever the zone of the machine it runs on. `date.today()` is the host's day: on a server kept in
UTC it is still yesterday in Paris between midnight and 1 or 2 a.m., and the same instant then fell on two
different days depending on whether Python or PostgreSQL (`AT TIME ZONE 'Europe/Paris'`) looked at it."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

#: Metropolitan France (the overseas departments live in other zones; the service's legal deadlines are
#: counted in the insurer's zone).
FRANCE = ZoneInfo("Europe/Paris")


def today() -> date:
    """Today in France."""
    return datetime.now(FRANCE).date()


def day_of(instant: datetime) -> date:
    """The day in France of an instant (a naive one is taken as already in French time)."""
    return (instant.astimezone(FRANCE) if instant.tzinfo else instant).date()
