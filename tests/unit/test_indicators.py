"""Indicators: the incremental and vectorised twins agree bit for bit, and both agree with pandas' definitions."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from agents import indicators as ind
from agents.state import Stateful

RNG = np.random.default_rng(7)
N = 3000
CLOSE = 1000.0 + np.cumsum(RNG.normal(0.0, 5.0, N))
HIGH = CLOSE + RNG.random(N) * 8.0
LOW = CLOSE - RNG.random(N) * 8.0
PERIODS = [1, 2, 3, 14, 50, 200]


def incremental(indicator: Stateful, *columns: np.ndarray) -> np.ndarray:
    return np.array([indicator.update(*values) for values in zip(*(c.tolist() for c in columns), strict=True)])


TWINS = {
    "sma": (lambda n: ind.SMA(n), lambda n: ind.sma(CLOSE, n), (CLOSE,)),
    "ema": (lambda n: ind.EMA(n), lambda n: ind.ema(CLOSE, n), (CLOSE,)),
    "rma": (lambda n: ind.RMA(n), lambda n: ind.rma(CLOSE, n), (CLOSE,)),
    "std": (lambda n: ind.RollingStd(n), lambda n: ind.rolling_std(CLOSE, n), (CLOSE,)),
    "atr": (lambda n: ind.ATR(n), lambda n: ind.atr(HIGH, LOW, CLOSE, n), (HIGH, LOW, CLOSE)),
    "rsi": (lambda n: ind.RSI(n), lambda n: ind.rsi(CLOSE, n), (CLOSE,)),
    "highest": (lambda n: ind.Highest(n), lambda n: ind.highest(HIGH, n), (HIGH,)),
    "lowest": (lambda n: ind.Lowest(n), lambda n: ind.lowest(LOW, n), (LOW,)),
}


@pytest.mark.parametrize("name", sorted(TWINS))
@pytest.mark.parametrize("period", PERIODS)
def test_incremental_and_vectorised_values_are_bit_identical(name: str, period: int) -> None:
    make, vector, columns = TWINS[name]
    event = incremental(make(period), *columns)
    assert np.array_equal(event, vector(period), equal_nan=True)
    assert not np.isnan(event[-1])


@pytest.mark.parametrize("name", sorted(TWINS))
def test_a_restored_indicator_continues_exactly(name: str) -> None:
    make, _, columns = TWINS[name]
    whole = incremental(make(14), *columns)
    first = make(14)
    head = incremental(first, *(c[:1000] for c in columns))
    restored = type(first).from_state(orjson.loads(orjson.dumps(first.to_state())))
    tail = incremental(restored, *(c[1000:] for c in columns))
    assert np.array_equal(np.concatenate([head, tail]), whole, equal_nan=True)


def test_definitions_match_pandas() -> None:
    s = pd.Series(CLOSE)
    np.testing.assert_allclose(ind.sma(CLOSE, 20), s.rolling(20).mean(), rtol=1e-11, equal_nan=True)
    np.testing.assert_allclose(ind.rolling_std(CLOSE, 20), s.rolling(20).std(ddof=0), rtol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(ind.highest(HIGH, 20), pd.Series(HIGH).rolling(20).max())
    np.testing.assert_array_equal(ind.lowest(LOW, 20), pd.Series(LOW).rolling(20).min())
    # EMA seeded with the SMA of its first n values: the same as pandas' recursive EMA over that seed and the rest.
    seeded = pd.concat([pd.Series([CLOSE[:20].mean()]), pd.Series(CLOSE[20:])], ignore_index=True)
    np.testing.assert_allclose(ind.ema(CLOSE, 20)[19:], seeded.ewm(span=20, adjust=False).mean(), rtol=1e-12)
    # Wilder's RSI: RMA is an EMA with alpha = 1/n.
    delta = np.diff(CLOSE)
    gain = pd.Series(np.maximum(delta, 0))
    loss = pd.Series(np.maximum(-delta, 0))
    avg_gain = pd.concat([pd.Series([gain[:14].mean()]), gain[14:]], ignore_index=True).ewm(alpha=1 / 14,
                                                                                          adjust=False).mean()
    avg_loss = pd.concat([pd.Series([loss[:14].mean()]), loss[14:]], ignore_index=True).ewm(alpha=1 / 14,
                                                                                          adjust=False).mean()
    np.testing.assert_allclose(ind.rsi(CLOSE, 14)[14:], 100 - 100 / (1 + avg_gain / avg_loss), rtol=1e-9)


def test_warm_up_is_nan_and_exactly_as_long_as_the_period() -> None:
    assert np.isnan(ind.sma(CLOSE, 50)[:49]).all() and not np.isnan(ind.sma(CLOSE, 50)[49])
    assert np.isnan(ind.rsi(CLOSE, 14)[:14]).all() and not np.isnan(ind.rsi(CLOSE, 14)[14])
    assert np.isnan(ind.sma(CLOSE[:10], 50)).all()


def test_rsi_is_100_without_losses_and_0_without_gains() -> None:
    rising = np.arange(1.0, 40.0)
    assert ind.rsi(rising, 14)[-1] == 100.0
    assert ind.rsi(rising[::-1].copy(), 14)[-1] == 0.0


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
@pytest.mark.parametrize("kind", [ind.SMA, ind.EMA, ind.RMA, ind.RollingStd, ind.ATR, ind.RSI, ind.Highest])
def test_a_period_must_be_a_positive_integer(bad: object, kind: type) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        kind(bad)
    with pytest.raises(ValueError, match="positive integer"):
        ind.rma(CLOSE, bad)  # type: ignore[arg-type]
