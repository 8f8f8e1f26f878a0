"""The service's days are French days (espace_sante/clock.py): no code asks the host for its own day, which on
a server kept in UTC is still yesterday for an hour or two after midnight in Paris (this suite once failed
between 23:00 and 00:00 UTC: a suspension recorded "today" in Paris was not yet due "today" in UTC)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import espace_sante
from espace_sante import clock

SOURCE = Path(espace_sante.__file__).parent


def test_today_is_the_day_in_paris() -> None:
    before = datetime.now(ZoneInfo("Europe/Paris")).date()
    assert clock.today() in (before, datetime.now(ZoneInfo("Europe/Paris")).date())
    # Between 23:00 and 00:00 UTC in winter (22:00 in summer) the two differ: the host's is not used.
    utc = datetime.now(UTC)
    if utc.hour >= 23:
        assert clock.today() > utc.date()


def test_no_code_takes_the_hosts_day() -> None:
    """Python's `date.today()` and SQL's `current_date` (the session is in UTC) both give the host's day."""
    found = []
    for path in SOURCE.rglob("*.py"):
        if path.name == "clock.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(r"\bdate\.today\(\)|\bcurrent_date\b", line, re.IGNORECASE):
                found.append(f"{path.relative_to(SOURCE)}:{number}")
    assert found == []
