"""Garbage-collector settings of the long-running processes (service/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from service.heap import YOUNG_THRESHOLD, settle_after_start_up


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_the_start_up_heap_is_frozen_out_of_later_collections() -> None:
    gc.unfreeze()
    survivor: list[object] = [[]]  # a container, so the collector tracks it
    assert any(tracked is survivor for tracked in gc.get_objects())

    settle_after_start_up()

    assert gc.get_freeze_count() > 0
    assert not any(tracked is survivor for tracked in gc.get_objects())


@pytest.mark.usefixtures("restored_collector")
def test_young_objects_get_a_larger_threshold_and_cycles_are_still_collected() -> None:
    settle_after_start_up()

    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
