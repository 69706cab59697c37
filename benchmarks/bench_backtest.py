"""Backtest speed on the shared 1h BTC file (17,583 bars), beside backtesting.py and vectorbt measured in the same run.

- one sma_cross(10, 30) backtest: bars/s of TradePulse's event path and compiled fast path, backtesting.py's
  FractionalBacktest and (if installed: `pip install -e '.[bench]'`) vectorbt's Portfolio.from_signals;
- the 174-point sma_cross grid (fast 5..50 step 5, slow 20..200 step 10, fast < slow): evaluations/s, each one a
  full backtest with its metrics. vectorbt runs the grid the way it is meant to, as one broadcast call;
- one backtest over 1,000,000 synthetic 1-minute bars, event and fast path, each in its own process: wall time
  and peak resident memory.

No broker or database is needed.

    python -m benchmarks.bench_backtest [--repeat N] [--skip-million]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from agents.bars import BarSeries
from agents.strategies.sma_cross import SmaCross
from training.backtest import BacktestConfig, run_backtest
from training.data import DataRequest, load_series

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "demo" / "bitfinex_btcusd_1h.csv"
GRID = [(f, s) for f in range(5, 51, 5) for s in range(20, 201, 10) if f < s]
CONFIG = BacktestConfig(cash=10_000.0)


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    action()  # warm-up: imports, JIT compilation, caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def frame_of(series: BarSeries) -> pd.DataFrame:
    return pd.DataFrame({"Open": series.open, "High": series.high, "Low": series.low, "Close": series.close,
                         "Volume": series.volume}, index=pd.to_datetime(series.ts, unit="ms"))


def backtesting_py(frame: pd.DataFrame) -> tuple[Callable[[int, int], float], str]:
    import backtesting

    from tests.backtesting_reference import reference_backtest, run_reference

    backtest = reference_backtest(frame)
    return (lambda fast, slow: float(run_reference(backtest, fast, slow)["Sharpe Ratio"]),
            f"backtesting.py {backtesting.__version__}")


def bench_vectorbt(frame: pd.DataFrame, repeat: int) -> tuple[float, float, str] | None:
    """(single backtest seconds, grid seconds, version), or None when vectorbt is not installed."""
    try:
        import vectorbt as vbt
    except ImportError:
        return None
    close, price = frame["Close"], frame["Open"]

    def cross_signals(fast: pd.DataFrame | pd.Series, slow: pd.DataFrame | pd.Series) -> tuple[object, object]:
        # signal at a bar's close, filled at the next bar's open, as in the other two
        return fast.vbt.crossed_above(slow).shift(1, fill_value=False), fast.vbt.crossed_below(slow).shift(
            1, fill_value=False)

    def single() -> float:
        entries, exits = cross_signals(close.rolling(10).mean(), close.rolling(30).mean())
        portfolio = vbt.Portfolio.from_signals(close, entries, exits, price=price, init_cash=10_000, fees=0.001,
                                               freq="1h")
        return float(portfolio.sharpe_ratio())

    fasts = [f for f, _ in GRID]
    slows = [s for _, s in GRID]

    def grid() -> object:
        fast = vbt.MA.run(close, fasts, short_name="fast").ma
        slow = vbt.MA.run(close, slows, short_name="slow").ma
        fast.columns = slow.columns = range(len(GRID))
        entries, exits = cross_signals(fast, slow)
        portfolio = vbt.Portfolio.from_signals(close, entries, exits, price=price, init_cash=10_000, fees=0.001,
                                               freq="1h")
        return portfolio.sharpe_ratio()

    return median_seconds(single, repeat), median_seconds(grid, max(1, repeat // 2)), f"vectorbt {vbt.__version__}"


def tradepulse_grid(series: BarSeries) -> list[float | None]:
    return [run_backtest(SmaCross({"fast": f, "slow": s}), series, CONFIG, path="fast").metrics["sharpe"]
            for f, s in GRID]


def million_bars(path: str) -> dict[str, float]:
    """Run in a child process: one backtest over 1,000,000 synthetic 1m bars; prints its time."""
    from tests.strategy_helpers import random_series

    series = random_series(1_000_000, 3, "1m", gaps=False)
    run_backtest(SmaCross(), series.slice(0, 1000), CONFIG, path=path)  # type: ignore[arg-type]  # JIT, imports
    data_mib = peak_rss_mib()
    started = time.perf_counter()
    result = run_backtest(SmaCross({"fast": 20, "slow": 120}), series, CONFIG, path=path)  # type: ignore[arg-type]
    trades = len(result.trades)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "trades": trades, "data_mib": data_mib, "peak_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike getrusage's maxrss it does not carry over an exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(path: str) -> dict[str, float]:
    output = subprocess.run([sys.executable, "-m", "benchmarks.bench_backtest", "--child", path], check=True,
                            capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-million", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(million_bars(args.child)))
        return

    series, _ = load_series(DataRequest("csv", None, None, None, csv_path=DATA))
    bars = len(series)
    frame = frame_of(series)
    reference, reference_name = backtesting_py(frame)
    print(f"data: {DATA.name}, {bars:,} bars; grid: {len(GRID)} sma_cross parameter sets")

    print("\none sma_cross(10, 30) backtest")
    ref_single = median_seconds(lambda: reference(10, 30), args.repeat)
    event = median_seconds(lambda: run_backtest(SmaCross(), series, CONFIG, path="event").metrics, args.repeat)
    fast = median_seconds(lambda: run_backtest(SmaCross(), series, CONFIG, path="fast").metrics, args.repeat * 4)
    vbt = bench_vectorbt(frame, args.repeat)
    rows = [("TradePulse event path", event), ("TradePulse fast path", fast), (reference_name, ref_single)]
    if vbt is not None:
        rows.append((vbt[2], vbt[0]))
    for name, seconds in rows:
        print(f"  {name:<28} {bars / seconds:>14,.0f} bars/s   ({seconds * 1000:8.2f} ms)")
    if vbt is None:
        print("  vectorbt                     not installed (pip install -e '.[bench]')")
    else:
        print(f"  fast path / vectorbt bars/s: {vbt[0] / fast:.2f}x")
    print(f"  event path / backtesting.py bars/s: {ref_single / event:.1f}x")

    print(f"\nthe {len(GRID)}-point grid")
    ref_grid = median_seconds(lambda: [reference(f, s) for f, s in GRID], 1)
    ours_grid = median_seconds(lambda: tradepulse_grid(series), max(1, args.repeat // 2))
    rows = [("TradePulse fast path", ours_grid), (reference_name, ref_grid)]
    if vbt is not None:
        rows.append((f"{vbt[2]} (one broadcast call)", vbt[1]))
    for name, seconds in rows:
        print(f"  {name:<40} {len(GRID) / seconds:>10,.1f} evaluations/s   ({seconds:7.2f} s)")
    ratio = ref_grid / ours_grid
    verdict = "met" if ratio >= 50 else "NOT met"
    print(f"  TradePulse / backtesting.py evaluations/s: {ratio:.0f}x (goal >= 50x: {verdict})")
    if vbt is not None:
        print(f"  TradePulse / vectorbt evaluations/s: {vbt[1] / ours_grid:.2f}x")

    if not args.skip_million:
        print("\none backtest over 1,000,000 synthetic 1-minute bars (each in its own process)")
        for path in ("fast", "event"):
            figures = child(path)
            print(f"  {path:<6} path: {figures['seconds']:7.2f} s, {1e6 / figures['seconds']:>12,.0f} bars/s, "
                  f"{figures['trades']:,.0f} trades; peak RSS {figures['peak_mib']:,.0f} MiB, of which "
                  f"{figures['data_mib']:,.0f} MiB before the backtest (interpreter, libraries, the bars)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
