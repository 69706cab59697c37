"""Log hygiene: repeated errors are collapsed with a count, and passwords never reach a log line."""

from __future__ import annotations

import logging

from tradepulse.logs import RepeatFilter, redact_url


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(message: str, *args: object, name: str = "aiokafka", level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_repeats_are_collapsed_per_window_and_counted() -> None:
    clock = FakeClock()
    repeats = RepeatFilter(window_s=10.0, clock=clock)
    template = "Unable connect to node with id %s: %s"
    assert repeats.filter(record(template, 1, "refused"))
    passed = [repeats.filter(record(template, 1, "refused")) for _ in range(500)]
    assert not any(passed)
    assert repeats.filter(record("Unable to update metadata from %s", [1])), "another message is not held back"

    clock.now = 10.5
    summary = record(template, 1, "refused")
    assert repeats.filter(summary)
    assert summary.getMessage() == "Unable connect to node with id 1: refused [repeated 500 more times in 10 s]"
    fresh = record(template, 1, "refused")
    clock.now = 21.0
    assert repeats.filter(fresh) and fresh.getMessage() == "Unable connect to node with id 1: refused"


def test_same_text_from_another_logger_or_level_is_its_own_stream() -> None:
    repeats = RepeatFilter(clock=FakeClock())
    assert repeats.filter(record("boom"))
    assert repeats.filter(record("boom", name="faust"))
    assert repeats.filter(record("boom", level=logging.WARNING))
    assert not repeats.filter(record("boom"))


def test_passwords_are_redacted_from_urls() -> None:
    assert redact_url("postgresql://tradepulse:s3cret@db:5432/tradepulse") == (
        "postgresql://tradepulse:***@db:5432/tradepulse"
    )
    assert redact_url("postgresql://db:5432/tradepulse") == "postgresql://db:5432/tradepulse"


def test_the_filter_forgets_old_messages_instead_of_growing_forever() -> None:
    clock = FakeClock()
    repeats = RepeatFilter(window_s=10.0, clock=clock)
    for i in range(5_000):
        clock.now = i * 0.01
        assert repeats.filter(record(f"preformatted message {i}"))
    assert len(repeats._seen) <= 1_001
