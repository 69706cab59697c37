"""Cutting tick columns into `TickBatch` records: the unit every feed publishes on market.ticks.

High-rate data must travel in batches (one Kafka message per symbol per short interval), so every feed (synthetic,
replay, live) shares this code: ticks of one instrument, ascending by time, are cut at event-time window boundaries
and at a maximum batch size.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from streams.records import SCHEMA_VERSION, TickBatch, stable_id

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

DEFAULT_BATCH_MS = 1_000
DEFAULT_MAX_BATCH = 100


def tick_batch(
    exchange: str,
    symbol: str,
    times: list[int],
    prices: list[float],
    amounts: list[float],
    *,
    source: str,
    first_id: object,
) -> TickBatch:
    """One batch; its id hashes the instrument, the first tick's id (or time) and the count, so a retry or a
    deterministic regeneration gives the same id. `ts` is the last tick's time: the batch is complete as of then."""
    return TickBatch(
        event_id=stable_id("ticks", exchange, symbol, first_id, len(times)),
        ts=times[-1],
        schema_version=SCHEMA_VERSION,
        exchange=exchange,
        symbol=symbol,
        times=times,
        prices=prices,
        amounts=amounts,
        source=source,
    )


def batch_bounds(times: IntArray, batch_ms: int, max_batch: int) -> list[tuple[int, int]]:
    """`[start, end)` index ranges: a new batch starts at each `batch_ms` window boundary and every `max_batch`
    ticks within a window. `times` must be ascending."""
    if batch_ms <= 0 or max_batch <= 0:
        raise ValueError("batch_ms and max_batch must be positive")
    if len(times) == 0:
        return []
    windows = times // batch_ms
    starts = np.flatnonzero(np.concatenate(([True], windows[1:] != windows[:-1])))
    ends = np.append(starts[1:], len(times))
    bounds: list[tuple[int, int]] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        bounds.extend((s, min(s + max_batch, end)) for s in range(start, end, max_batch))
    return bounds


def batches(
    exchange: str,
    symbol: str,
    times: IntArray,
    prices: FloatArray,
    amounts: FloatArray,
    *,
    source: str,
    batch_ms: int = DEFAULT_BATCH_MS,
    max_batch: int = DEFAULT_MAX_BATCH,
    trade_ids: list[str] | None = None,
) -> Iterator[TickBatch]:
    """The ticks of one instrument as batches. A batch's id uses its first trade id where the exchange gives ids,
    else `(first time, position in its window)`, which stays unique when several ticks share a millisecond."""
    time_list, price_list, amount_list = times.tolist(), prices.tolist(), amounts.tolist()
    window_start = -1
    for start, end in batch_bounds(times, batch_ms, max_batch):
        if time_list[start] // batch_ms != window_start:
            window_start, position = time_list[start] // batch_ms, 0
        first_id = trade_ids[start] if trade_ids else f"{time_list[start]}.{position}"
        yield tick_batch(
            exchange, symbol, time_list[start:end], price_list[start:end], amount_list[start:end],
            source=source, first_id=first_id,
        )
        position += 1
