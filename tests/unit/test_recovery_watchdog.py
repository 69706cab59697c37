"""When table recovery has stalled on changelog records the consumer read past (`agents.recovery`)."""

from __future__ import annotations

from faust.types import TP

from agents.recovery import ChangelogProgress, stalled_changelogs

SIMULATORS = TP("paper-simulators-changelog", 2)
STRATEGIES = TP("paper-strategies-changelog", 2)


def test_a_partition_read_to_its_end_without_delivering_is_sought_back_to_the_first_missing_record() -> None:
    progress = {SIMULATORS: ChangelogProgress(applied=-1, needed=48, position=49, quiet_since=0.0)}
    assert stalled_changelogs(progress, now=20.0, stall_s=15.0) == {SIMULATORS: 0}


def test_a_partially_applied_partition_resumes_after_its_last_applied_record() -> None:
    progress = {STRATEGIES: ChangelogProgress(applied=30, needed=40, position=41, quiet_since=0.0)}
    assert stalled_changelogs(progress, now=15.0, stall_s=15.0) == {STRATEGIES: 31}


def test_a_partition_still_being_fetched_is_left_alone() -> None:
    progress = {SIMULATORS: ChangelogProgress(applied=-1, needed=48, position=20, quiet_since=0.0)}
    assert stalled_changelogs(progress, now=100.0, stall_s=15.0) == {}


def test_a_partition_with_a_recent_event_or_seek_is_left_alone() -> None:
    progress = {SIMULATORS: ChangelogProgress(applied=10, needed=48, position=49, quiet_since=90.0)}
    assert stalled_changelogs(progress, now=100.0, stall_s=15.0) == {}


def test_a_recovered_partition_or_one_without_a_position_is_left_alone() -> None:
    progress = {
        SIMULATORS: ChangelogProgress(applied=48, needed=48, position=49, quiet_since=0.0),
        STRATEGIES: ChangelogProgress(applied=-1, needed=19, position=None, quiet_since=0.0),
    }
    assert stalled_changelogs(progress, now=100.0, stall_s=15.0) == {}
