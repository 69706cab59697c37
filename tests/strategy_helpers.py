"""Shared by strategy, look-ahead and fast-path tests: synthetic bars, the event path's intents, and the checks
that the vectorised signals and a restored strategy give exactly what the event path gives."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import orjson
import pytest

from agents.bars import Bar, BarSeries, HigherTimeframes
from agents.strategies import STRATEGIES, create_strategy
from agents.strategies.base import Intent, ParamError, Signals, Strategy
from streams.keys import TIMEFRAMES

HOUR = 3_600_000
T0 = 1_700_006_400_000  # a UTC midnight

Row = tuple[float, float, float, float] | tuple[float, float, float, float, float]
"""open, high, low, close and optionally the volume of one bar."""


def random_series(n: int, seed: int, timeframe: str = "1h", *, gaps: bool = True, start_ms: int = 1_600_000_000_000,
                  symbol: str = "BTC/USDT") -> BarSeries:
    """A random walk with volatility regimes, volume bursts and (optionally) missing bars, aligned to `timeframe`."""
    rng = np.random.default_rng(seed)
    span = TIMEFRAMES[timeframe]
    steps = np.ones(n, dtype=np.int64)
    if gaps:
        missing = rng.random(n) < 0.01
        steps[missing] = rng.integers(2, 6, size=int(missing.sum()))
    ts = start_ms // span * span + np.cumsum(steps) * span
    vol = np.where((np.arange(n) // 500) % 3 == 0, 0.02, 0.006)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0002, vol)))
    open_ = np.concatenate(([close[0]], close[:-1])) * np.exp(rng.normal(0, vol / 4))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, vol / 2)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, vol / 2)))
    volume = rng.lognormal(3.0, 0.6, n) * np.where(rng.random(n) < 0.03, 5.0, 1.0)
    return BarSeries("synthetic", symbol, timeframe, ts, open_, high, low, close, volume)


def random_bars(seed: int, n: int = 3000, tick: float | None = None, span: int = HOUR) -> list[Bar]:
    """A geometric random walk from T0 without gaps; with `tick`, prices on a grid so equal values (ties) happen."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * (1.0 + rng.normal(0.0, 0.001, n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.004, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.004, n)))
    volume = rng.lognormal(0.0, 0.6, n) * 100.0
    if tick is not None:
        open_, high, low, close = (np.round(x / tick) * tick for x in (open_, high, low, close))
        volume = np.round(volume / 10.0) * 10.0
    return [Bar(T0 + i * span, *values) for i, values in
            enumerate(zip(open_.tolist(), high.tolist(), low.tolist(), close.tolist(), volume.tolist(), strict=True))]


def candles(closes: Sequence[float], spread: float = 1.0) -> list[Bar]:
    """Hourly bars from T0, high and low `spread` around the close (true range 2 * spread while closes move <= it)."""
    return [Bar(T0 + i * HOUR, c, c + spread, c - spread, c, 1.0) for i, c in enumerate(closes)]


def bars_of(rows: Sequence[Row], start: int = 0) -> list[Bar]:
    """Hourly bars from hour `start` after T0, one a row; a row without a volume has a volume of 1."""
    out: list[Bar] = []
    for i, (o, h, low, c, *volume) in enumerate(rows):
        out.append(Bar(T0 + (start + i) * HOUR, o, h, low, c, volume[0] if volume else 1.0))
    return out


def series_of(bars: Sequence[Bar], timeframe: str = "1h") -> BarSeries:
    return BarSeries.from_bars("test", "BTC-USD", timeframe, bars)


def event_intents(strategy: Strategy, series: BarSeries,
                  higher: HigherTimeframes | None = None) -> list[list[Intent]]:
    """What the event path hands the simulator at each bar (higher-timeframe bars delivered first); `higher`
    carries on a roll-up that earlier bars fed, else a new one is started when the strategy wants one."""
    wanted = strategy.higher_timeframes()
    if higher is None and wanted:
        higher = HigherTimeframes(series.timeframe, wanted)
    out: list[list[Intent]] = []
    for bar in series.bars():
        if higher is not None:
            for tf, hb in higher.update(bar):
                strategy.on_higher_bar(tf, hb)
        out.append(list(strategy.on_bar(bar)))
    return out


def comparable(intents: list[Intent]) -> list[tuple[Any, ...]]:
    """Intents without their free-text reason, NaN-safe: (action, side, order_type, stop_loss, take_profit)."""
    def level(value: float | None) -> float | None:
        return None if value is None or math.isnan(value) else value

    return [(i.action, i.side, i.order_type, level(i.stop_loss), level(i.take_profit)) for i in intents]


def first_intent(events: list[list[Intent]]) -> int:
    """The index of the first bar with an intent."""
    return next(i for i, intents in enumerate(events) if intents)


def _checked_signals(strategy_cls: type[Strategy], params: dict[str, Any],
                     series: BarSeries) -> tuple[Signals, list[list[Intent]]]:
    """The vectorised signals and the event path's intents, asserted to stand for the same intents on every bar."""
    events = event_intents(strategy_cls(params), series)
    signals = strategy_cls(params).signals(series)
    assert isinstance(signals, Signals)
    for i, intents in enumerate(events):
        assert comparable(signals.intents_at(i)) == comparable(intents), (
            f"{strategy_cls.name} {params}: bar {i} ({int(series.ts[i])})"
        )
    return signals, events


def assert_signals_match_events(strategy_cls: type[Strategy], params: dict[str, Any], series: BarSeries) -> int:
    """The vectorised signals stand for exactly the event path's intents on every bar; returns the intent count."""
    _, events = _checked_signals(strategy_cls, params, series)
    return sum(len(i) for i in events)


def as_signals(events: list[list[Intent]]) -> Signals:
    """The signals that stand for market intents per bar, at most one entry a bar."""
    out = Signals.empty(len(events))
    for i, intents in enumerate(events):
        entries = [x for x in intents if x.action == "enter"]
        assert len(entries) <= 1, f"two entries on bar {i}"
        for x in intents:
            assert x.order_type == "market"
            flags = {("enter", "long"): out.enter_long, ("exit", "long"): out.exit_long,
                     ("enter", "short"): out.enter_short, ("exit", "short"): out.exit_short}
            flags[(x.action, x.side)][i] = True
            if x.action == "enter":
                out.stop_loss[i] = np.nan if x.stop_loss is None else x.stop_loss
                out.take_profit[i] = np.nan if x.take_profit is None else x.take_profit
    return out


def assert_parity(strategy_cls: type[Strategy], params: dict[str, Any], bars: Sequence[Bar],
                  timeframe: str = "1h") -> list[list[Intent]]:
    """Run both paths over `bars`; assert they agree bar for bar and their signal columns bit for bit; return the
    event intents."""
    signals, events = _checked_signals(strategy_cls, params, series_of(bars, timeframe))
    expected = as_signals(events)
    for name in ("enter_long", "exit_long", "enter_short", "exit_short", "stop_loss", "take_profit"):
        assert np.array_equal(getattr(signals, name), getattr(expected, name), equal_nan=True), name
    return events


def assert_restored_continues(strategy_cls: type[Strategy], params: dict[str, Any], bars: Sequence[Bar],
                              timeframe: str = "1h", cut: int = 1500) -> None:
    """A strategy dumped through JSON after `cut` bars and restored gives the intents of one never interrupted
    (the higher-timeframe roll-up, if any, carries on across the cut)."""
    series = series_of(bars, timeframe)
    whole = event_intents(strategy_cls(params), series)
    first = strategy_cls(params)
    wanted = first.higher_timeframes()
    higher = HigherTimeframes(timeframe, wanted) if wanted else None
    head = event_intents(first, series.slice(0, cut), higher)
    restored = strategy_cls.from_state(orjson.loads(orjson.dumps(first.to_state())))
    tail = event_intents(restored, series.slice(cut, len(series)), higher)
    assert [comparable(x) for x in head + tail] == [comparable(x) for x in whole]


def sample_params(strategy_cls: type[Strategy], count: int, seed: int) -> list[dict[str, Any]]:
    """Valid parameter sets drawn from the strategy's search space (the default first)."""
    rng = random.Random(seed)
    found = [dict(strategy_cls.validate_params({}))]
    attempts = 0
    while len(found) < count and attempts < 500:
        attempts += 1
        params = {name: rng.choice(spec.grid()) for name, spec in strategy_cls.parameters.items()}
        try:
            found.append(strategy_cls.validate_params(params))
        except ValueError:
            continue
    return found


class StrategyContract:
    """What every strategy must do, checked by subclassing this as `TestContract` in the strategy's test module: it
    is registered under its name, refuses bad parameters, its search space is valid, and on random walks (with ties
    when prices lie on a tick grid) its vectorised signals equal the event path bit for bit and a restored copy
    continues exactly.

    The subclass names the strategy, its registry name and the seed of the walks in its class statement
    (`class TestContract(StrategyContract, strategy=..., registered_as=..., seed=...)`) and the parameter tables in
    its body; pytest parametrizes the tests from them through `pytest_generate_tests`.
    """

    strategy: ClassVar[type[Strategy]]
    registered_as: ClassVar[str]
    """Its name in the registry."""
    refused: ClassVar[list[dict[str, Any]]]
    """Parameter sets the strategy must refuse with a `ParamError`."""
    params: ClassVar[list[dict[str, Any]]] = []
    """Parameter sets of the random-walk checks on hourly bars."""
    cases: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    """(base timeframe, parameters) of random-walk checks on other timeframes too."""
    seed: ClassVar[int]
    """The random walk of the parity check; that of the restore check is `seed + 1`."""
    min_entries: ClassVar[int] = 10
    """The parity check's walk must enter more often than this, or it proves little."""
    brackets_only: ClassVar[bool] = False
    """The strategy never exits on a signal: every entry carries a stop and a target, on their sides of the close."""

    def __init_subclass__(cls, *, strategy: type[Strategy], registered_as: str, seed: int, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.strategy, cls.registered_as, cls.seed = strategy, registered_as, seed

    def walk(self, seed: int, timeframe: str, tick: float | None) -> list[Bar]:
        """The bars of a random walk on `timeframe` (with `tick`, prices on that grid)."""
        return random_bars(seed, tick=tick, span=TIMEFRAMES[timeframe])

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        args = metafunc.fixturenames
        if "refused_params" in args:
            metafunc.parametrize("refused_params", self.refused)
        if "params" in args:
            metafunc.parametrize(("timeframe", "params"), [("1h", p) for p in self.params] + self.cases)
        if "tick" in args:
            metafunc.parametrize("tick", [None, 0.05])

    def test_registered(self) -> None:
        assert STRATEGIES[self.registered_as] is self.strategy
        assert isinstance(create_strategy(self.registered_as), self.strategy)

    def test_bad_parameters_are_rejected(self, refused_params: dict[str, Any]) -> None:
        with pytest.raises(ParamError):
            self.strategy(refused_params)

    def test_search_spaces_lie_inside_the_valid_ranges(self) -> None:
        """Every value the optimiser may try for a parameter passes that parameter's own validation unchanged."""
        for name, spec in self.strategy.parameters.items():
            grid = spec.grid()
            assert grid, name
            for value in grid:
                assert spec.validate(name, value) == value, (name, value)

    def test_signals_equal_the_event_path_on_a_random_walk(self, timeframe: str, params: dict[str, Any],
                                                           tick: float | None) -> None:
        events = assert_parity(self.strategy, params, self.walk(self.seed, timeframe, tick), timeframe)
        assert sum(1 for e in events for x in e if x.action == "enter") > self.min_entries
        assert first_intent(events) >= self.strategy(params).warmup_bars()
        if self.brackets_only:
            assert not any(x.action == "exit" for e in events for x in e)
            for intents in events:
                for x in intents:
                    assert x.stop_loss is not None and x.take_profit is not None
                    assert (x.stop_loss < x.take_profit) == (x.side == "long")

    def test_a_restored_strategy_continues_exactly(self, timeframe: str, params: dict[str, Any]) -> None:
        assert_restored_continues(self.strategy, params, self.walk(self.seed + 1, timeframe, None), timeframe)
