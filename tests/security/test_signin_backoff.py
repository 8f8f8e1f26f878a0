"""The back-off rule itself (people/ratelimit.py `count`), whatever the rhythm of the guesses: what
docs/access-policy.md "Sign-in limits" promises about one source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from espace_sante.people.ratelimit import Rule, count, waiting
from espace_sante.settings import Settings
from espace_sante.storage.ratelimit import Counter

SETTINGS = Settings()
RULE = Rule(
    SETTINGS.signin_max_failures,
    SETTINGS.signin_failure_window_seconds,
    first_wait=SETTINGS.signin_backoff_seconds,
    max_wait=SETTINGS.signin_lockout_seconds,
)
START = datetime(2026, 12, 7, 9, tzinfo=UTC)

#: After each answer the guesser waits this much more than it must (0: at once), in seconds.
rhythms = st.lists(
    st.one_of(st.just(0.0), st.floats(0, 120), st.sampled_from([899.0, 900.0, 901.0]), st.floats(0, 3600)),
    min_size=1,
    max_size=200,
)


def guesses_in_an_hour(rhythm: list[float]) -> tuple[int, list[timedelta]]:
    """Attempts let through from one source in the first hour, and every wait started."""
    counter, now, let_through, waits = Counter(0, START, None), START, 0, []
    for extra in rhythm * 50:
        until = waiting(counter, now)
        if until is not None:
            now = until + timedelta(seconds=extra)
            continue
        if now >= START + timedelta(hours=1):
            break
        counter = count(counter, now, RULE)
        let_through += 1
        if counter.locked_until is not None and counter.locked_until > now:
            waits.append(counter.locked_until - now)
        now += timedelta(seconds=extra)
    return let_through, waits


@given(rhythms)
def test_one_source_gets_at_most_thirty_guesses_an_hour_and_never_waits_more_than_the_cap(
    rhythm: list[float],
) -> None:
    let_through, waits = guesses_in_an_hour(rhythm)
    assert let_through <= 30
    assert all(w <= timedelta(seconds=RULE.max_wait) for w in waits)


def test_the_free_failures_never_wait_and_then_each_wait_doubles() -> None:
    counter, now, waits = Counter(0, START, None), START, []
    for _ in range(RULE.free + 3):
        assert waiting(counter, now) is None
        counter = count(counter, now, RULE)
        waits.append(counter.locked_until - now if counter.locked_until else timedelta(0))
        now = counter.locked_until or now
    assert waits[: RULE.free - 1] == [timedelta(0)] * (RULE.free - 1)
    assert [w.total_seconds() for w in waits[RULE.free - 1 :]] == [30, 60, 120, 240]
