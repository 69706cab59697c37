"""What trade_paper spends on each closed bar of an instrument: strategy, risk and simulator (`step_bar`) for the
five strategies bench_paper runs per symbol, on the shared 1h BTC file, and the share of it that restores every
strategy and simulator from its JSON state and dumps it again (the agent keeps them in a table between bars),
measured alone over the same states.

No broker or database is needed. The step is also the machine's speed for `bench_paper`, which measures it in
each run (`machine_reference_ms`): its latencies are absolute, and the hosts this runs on differ by two times.

    python -m benchmarks.bench_bar_step [--bars 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from agents.bars import HigherTimeframes
from agents.execution.risk import RiskLimits
from agents.execution.simulator import ExecutionSimulator
from agents.paper import TradingConfig, bar_of, fresh_strategy_state, step_bar, trading_config
from agents.strategies import strategy_class
from benchmarks.bench_backtest import DATA
from streams.records import SCHEMA_VERSION, Candle, ConfigChange, make_candle
from training.data import DataRequest, load_series

LIMITS = RiskLimits(max_open_positions=1000, max_positions_per_symbol=1000, max_exposure=1000.0,
                    daily_loss_limit=1.0)
WARM_UP = 200
STRATEGIES = [
    ("sma_cross", {"fast": 3, "slow": 8}),
    ("ema_trend", {"fast": 3, "slow": 8, "atr_period": 5, "atr_target": 2.0, "direction": "both"}),
    ("donchian_breakout", {"entry_period": 10, "exit_period": 5, "atr_period": 5}),
    ("rsi_bollinger", {"bb_period": 10, "k": 1.5, "rsi_period": 7, "oversold": 40.0, "overbought": 60.0}),
    ("VOLUME_BREAKOUT", {"range_period": 10, "volume_period": 10, "volume_k": 1.0}),
]
"""The strategies a symbol's configurations run in bench_paper, one each."""


def configurations() -> list[TradingConfig]:
    return [trading_config(ConfigChange(
        event_id=f"bench-{k}", ts=0, schema_version=SCHEMA_VERSION, configuration_id=f"bench-{k}",
        action="activate", strategy=name, params=params, exchange="bitfinex", symbols=["BTC/USD"], timeframe="1h",
        account_id="paper-bench", allocation=10_000.0, execution={"allow_short": True}))
        for k, (name, params) in enumerate(STRATEGIES)]


def session(configs: list[TradingConfig], candles: list[Candle]) -> tuple[float, list[dict[str, Any]]]:
    """Seconds per bar for all `configs`, and the states the bars left (one sample every 50 bars)."""
    history = [bar_of(c) for c in candles[:WARM_UP]]
    strategies: dict[str, Any] = {c.configuration_id: fresh_strategy_state(c, history) for c in configs}
    simulators: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index, candle in enumerate(candles[WARM_UP:]):
        for config in configs:
            key = config.configuration_id
            step = step_bar(config, strategies[key], simulators.get(key), candle, LIMITS, None, None)
            strategies[key] = step.strategy_state
            simulators[key] = step.fills.state
        if index % 50 == 0:
            samples.append({"strategies": dict(strategies), "simulators": dict(simulators)})
    return (time.perf_counter() - started) / (len(candles) - WARM_UP), samples


def bench_candles(bars: int) -> list[Candle]:
    """The warm-up and then `bars` 1h candles of the shared BTC file."""
    series, _ = load_series(DataRequest("csv", None, None, None, csv_path=DATA))
    return [make_candle("bitfinex", "BTC/USD", "1h", b.ts, (b.open, b.high, b.low, b.close, b.volume),
                        source="bench") for b in series.bars()][:WARM_UP + bars]


def machine_reference_ms(bars: int = 1_000, repeat: int = 3) -> float:
    """Milliseconds of a bar's step for the five configurations, the median of `repeat` sessions over `bars` bars:
    the machine's speed beside figures that depend on it."""
    candles, configs = bench_candles(bars), configurations()
    return statistics.median(session(configs, candles)[0] for _ in range(repeat)) * 1000


def state_round_trip(configs: list[TradingConfig], sample: dict[str, Any]) -> None:
    """What a bar costs each configuration in states alone: restore strategy and simulator, dump them again."""
    for config in configs:
        key = config.configuration_id
        strategy_state, simulator_state = sample["strategies"][key], sample["simulators"].get(key)
        strategy_class(config.strategy).from_state(strategy_state["strategy"]).to_state()
        if strategy_state["higher"] is not None:
            HigherTimeframes.from_state(strategy_state["higher"]).to_state()
        if simulator_state is not None:
            ExecutionSimulator.from_state(simulator_state["simulator"]).to_state()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    candles = bench_candles(args.bars)
    configs = configurations()
    steps, round_trips = [], []
    for _ in range(args.repeat):
        seconds, samples = session(configs, candles)
        steps.append(seconds)
        started = time.perf_counter()
        for sample in samples:
            state_round_trip(configs, sample)
        round_trips.append((time.perf_counter() - started) / len(samples))
    step, round_trip = statistics.median(steps), statistics.median(round_trips)
    print(f"{len(candles) - WARM_UP:,} 1h bars of {DATA.name}, {len(configs)} configurations "
          f"({', '.join(name for name, _ in STRATEGIES)}); median of {args.repeat}")
    print(f"step_bar, all configurations : {step * 1000:.3f} ms per bar")
    print(f"  of which the state round trip: {round_trip * 1000:.3f} ms per bar "
          f"(restore and dump every strategy and simulator; {round_trip / step:.0%} of the step)")


if __name__ == "__main__":
    main()
