"""A worker exempts what it holds at start from the collector, collects young objects less often and lets its
consumer thread take the interpreter lock sooner."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.app import GC_THRESHOLDS, create_app, spare_long_lived_objects_from_gc, switch_threads_sooner
from tradepulse.settings import Settings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_the_start_up_survivors_are_frozen_and_the_thresholds_raised(restored_gc: None, tmp_path: Path) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    spare_long_lived_objects_from_gc(create_app(Settings(data_dir=tmp_path)))
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 10_000, "the imported modules' objects are among the frozen survivors"


def test_the_thread_switch_interval_is_the_worker_setting() -> None:
    default = sys.getswitchinterval()
    settings = Settings()
    try:
        switch_threads_sooner(settings)
        assert sys.getswitchinterval() == pytest.approx(settings.worker.thread_switch_interval_s)
        assert sys.getswitchinterval() < default
    finally:
        sys.setswitchinterval(default)
