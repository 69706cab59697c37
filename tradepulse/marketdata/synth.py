"""Seeded synthetic market data: ticks and 1-minute candles for several symbols, for the offline demo and tests.

The model, minute by minute:
- a market-wide regime (range, trend up, trend down, volatile) from a Markov switching process with mean durations
  of hours; crypto moves together, so all symbols share it and a common market shock (minute returns correlate
  around 0.5);
- each symbol's log price follows its own drift and volatility scaled by the regime and by intraday seasonality
  (busier around the European and US sessions), pulled weakly back towards its starting level (and, in range
  regimes, towards the level where the range began) so magnitudes stay realistic over long runs;
- inside a minute, ticks arrive as a Poisson count that grows with activity, at sorted random milliseconds, on a
  Brownian bridge from the previous close to this minute's close; volume grows with volatility and with the size
  of the move and is split over the ticks.

Everything is a pure function of the seed, the start time and the symbols: the same arguments give identical
output, and adding a symbol does not change the others. Candles are aggregated from the very same ticks, so a
candle builder fed `generate_ticks` rebuilds `generate_candles` (volumes up to floating-point summation order).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from streams.records import TIMEFRAMES, Candle, TickBatch, make_candle
from tradepulse.marketdata.ticks import DEFAULT_BATCH_MS, DEFAULT_MAX_BATCH, FloatArray, IntArray, batches

MINUTE_MS = TIMEFRAMES["1m"]
CHUNK_MINUTES = 60
"""Ticks are generated an hour at a time, so long runs stream in bounded memory."""
MINUTES_PER_YEAR = 525_600
DEFAULT_EXCHANGE = "synthetic"
SOURCE = "synth"


@dataclass(frozen=True)
class SymbolProfile:
    """Realistic magnitudes for one base currency."""

    price: float
    annual_vol: float
    tick_size: float
    volume_per_minute: float


PROFILES: dict[str, SymbolProfile] = {
    "BTC": SymbolProfile(60_000.0, 0.55, 0.1, 6.0),
    "ETH": SymbolProfile(3_000.0, 0.70, 0.01, 60.0),
    "SOL": SymbolProfile(150.0, 0.95, 0.001, 1_200.0),
    "BNB": SymbolProfile(550.0, 0.60, 0.01, 250.0),
    "XRP": SymbolProfile(0.6, 0.85, 0.0001, 300_000.0),
    "ADA": SymbolProfile(0.45, 0.85, 0.0001, 350_000.0),
    "DOGE": SymbolProfile(0.12, 1.00, 0.00001, 1_500_000.0),
    "LTC": SymbolProfile(80.0, 0.75, 0.01, 900.0),
    "AVAX": SymbolProfile(35.0, 0.95, 0.001, 4_000.0),
    "DOT": SymbolProfile(7.0, 0.90, 0.001, 20_000.0),
}


@dataclass(frozen=True)
class Regime:
    name: str
    drift_per_day: float
    vol_mult: float
    reversion: float
    mean_minutes: float


REGIMES: tuple[Regime, ...] = (
    Regime("range", 0.0, 0.7, 0.004, 600.0),
    Regime("trend_up", 0.05, 1.0, 0.0, 480.0),
    Regime("trend_down", -0.05, 1.2, 0.0, 360.0),
    Regime("volatile", 0.0, 2.4, 0.0, 180.0),
)
LONG_RUN_REVERSION = 1.0 / (60 * MINUTES_PER_YEAR / 365)
"""Per-minute pull towards the starting level: a half-life of about six weeks."""
MARKET_BETA = 0.75
MEAN_ACTIVITY = 2.35
"""Long-run mean of the activity factor (regime volatility x seasonality x move size), so the tick rate averages
about `ticks_per_minute`."""


def profile_for(symbol: str) -> SymbolProfile:
    """The profile of the symbol's base currency; unknown bases get a deterministic made-up one."""
    base = symbol.split("/")[0].upper()
    known = PROFILES.get(base)
    if known is not None:
        return known
    rng = np.random.default_rng(zlib.crc32(base.encode()))
    price = float(10 ** rng.uniform(-1, 3))
    tick = float(10 ** (np.floor(np.log10(price)) - 4))
    return SymbolProfile(price, 0.9, tick, 50_000.0 / price)


def seasonality(minute_of_day: IntArray) -> FloatArray:
    """Activity by UTC time of day: quiet in the Asian night, peaks at the European open and the US session."""
    hour = minute_of_day / 60.0
    return 0.65 + 0.35 * np.exp(-((hour - 8.0) ** 2) / 4.0) + 0.7 * np.exp(-((hour - 15.0) ** 2) / 6.0)


@dataclass(frozen=True)
class MarketMinutes:
    """One chunk of the market-wide process."""

    start_ms: int
    regime: IntArray
    shock: FloatArray
    season: FloatArray


class _Market:
    """The shared regime chain and market shocks; its random stream depends on the seed only."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng([seed, 0])
        self._regime = 0
        self._drift = np.array([r.drift_per_day / 1440 for r in REGIMES])
        self._leave = np.array([1.0 / r.mean_minutes for r in REGIMES])

    def advance(self, start_ms: int, minutes: int) -> MarketMinutes:
        switches = self._rng.random(minutes)
        picks = self._rng.integers(1, len(REGIMES), minutes)
        regime = np.empty(minutes, dtype=np.int64)
        current = self._regime
        for i in range(minutes):
            if switches[i] < self._leave[current]:
                current = (current + int(picks[i])) % len(REGIMES)
            regime[i] = current
        self._regime = current
        minute_of_day = ((start_ms // MINUTE_MS + np.arange(minutes)) % 1440).astype(np.int64)
        return MarketMinutes(start_ms, regime, self._rng.standard_normal(minutes), seasonality(minute_of_day))


@dataclass(frozen=True)
class TickColumns:
    """The ticks of one symbol over one chunk, plus per minute: where its ticks start, its time and its regime
    (an index into `REGIMES`)."""

    symbol: str
    times: IntArray
    prices: FloatArray
    amounts: FloatArray
    minute_starts: IntArray
    minute_times: IntArray
    regimes: IntArray


class _Walk:
    """One symbol's price path; its random stream depends on the seed and the symbol only."""

    def __init__(self, symbol: str, seed: int, ticks_per_minute: float) -> None:
        self.symbol = symbol
        self.profile = profile_for(symbol)
        self._rng = np.random.default_rng([seed, zlib.crc32(symbol.encode()) + 1])
        self._ticks_per_minute = ticks_per_minute
        self._home = float(np.log(self.profile.price))
        self._log_price = self._home
        self._anchor = self._home
        self._last_regime = -1
        self._sigma = self.profile.annual_vol / np.sqrt(MINUTES_PER_YEAR)

    def advance(self, market: MarketMinutes) -> TickColumns:
        rng, n = self._rng, len(market.regime)
        idio = rng.standard_normal(n)
        vol_mult = np.array([r.vol_mult for r in REGIMES])[market.regime] * market.season
        sigma = self._sigma * vol_mult
        shocks = MARKET_BETA * market.shock + np.sqrt(1 - MARKET_BETA**2) * idio
        closes = np.empty(n)
        opens = np.empty(n)
        level = self._log_price
        for i in range(n):
            regime = REGIMES[market.regime[i]]
            if market.regime[i] != self._last_regime:
                self._anchor, self._last_regime = level, int(market.regime[i])
            pull = LONG_RUN_REVERSION * (self._home - level) + regime.reversion * (self._anchor - level)
            opens[i] = level
            level += regime.drift_per_day / 1440 + pull + sigma[i] * shocks[i]
            closes[i] = level
        self._log_price = level

        activity = vol_mult * (1.0 + 2.0 * np.abs(shocks)) / MEAN_ACTIVITY
        counts = np.maximum(1, rng.poisson(self._ticks_per_minute * activity))
        total = int(counts.sum())
        minute_index = np.repeat(np.arange(n), counts)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        position = np.arange(total) - starts[minute_index] + 1
        fraction = position / counts[minute_index]

        steps = rng.standard_normal(total) * (sigma / np.sqrt(counts))[minute_index]
        walk = np.cumsum(steps)
        walk -= np.repeat(walk[starts] - steps[starts], counts)
        bridge = walk - fraction * walk[starts + counts - 1][minute_index]
        log_prices = opens[minute_index] + fraction * (closes - opens)[minute_index] + bridge
        tick = self.profile.tick_size
        decimals = max(0, -int(np.floor(np.log10(tick))))
        prices = np.maximum(np.round(np.round(np.exp(log_prices) / tick) * tick, decimals), tick)

        minute_volume = (
            self.profile.volume_per_minute * vol_mult**1.2 * (1.0 + 1.5 * np.abs(shocks))
            * rng.lognormal(0.0, 0.35, n)
        )
        weights = rng.gamma(1.0, 1.0, total)
        shares = weights / np.add.reduceat(weights, starts)[minute_index]
        amounts = np.maximum(np.round(minute_volume[minute_index] * shares, 6), 1e-6)

        minute_times = market.start_ms + np.arange(n, dtype=np.int64) * MINUTE_MS
        offsets = np.sort(minute_index * MINUTE_MS + rng.integers(0, MINUTE_MS, total))
        return TickColumns(
            self.symbol, market.start_ms + offsets, prices, amounts, starts.astype(np.int64), minute_times,
            market.regime,
        )


def _validate(symbols: Sequence[str], start_ms: int, minutes: int, ticks_per_minute: float) -> None:
    if not symbols:
        raise ValueError("at least one symbol is needed")
    if len(set(symbols)) != len(symbols):
        raise ValueError("symbols must be distinct")
    if start_ms % MINUTE_MS:
        raise ValueError("start_ms must be aligned to a minute")
    if minutes < 0:
        raise ValueError("minutes must not be negative")
    if ticks_per_minute <= 0:
        raise ValueError("ticks_per_minute must be positive")


def generate_columns(
    symbols: Sequence[str], start_ms: int, minutes: int, seed: int, ticks_per_minute: float = 60.0
) -> Iterator[list[TickColumns]]:
    """Hour by hour, the tick columns of every symbol (in the order given)."""
    _validate(symbols, start_ms, minutes, ticks_per_minute)
    market = _Market(seed)
    walks = [_Walk(symbol, seed, ticks_per_minute) for symbol in symbols]
    for offset in range(0, minutes, CHUNK_MINUTES):
        chunk = market.advance(start_ms + offset * MINUTE_MS, min(CHUNK_MINUTES, minutes - offset))
        yield [walk.advance(chunk) for walk in walks]


def generate_ticks(
    symbols: Sequence[str],
    start_ms: int,
    minutes: int,
    seed: int,
    ticks_per_minute: float = 60.0,
    *,
    exchange: str = DEFAULT_EXCHANGE,
    batch_ms: int = DEFAULT_BATCH_MS,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Iterator[TickBatch]:
    """Tick batches, one per symbol per `batch_ms` window (cut at `max_batch` ticks), in event-time order."""
    if (CHUNK_MINUTES * MINUTE_MS) % batch_ms:
        raise ValueError(f"batch_ms must divide {CHUNK_MINUTES * MINUTE_MS}")
    for chunk in generate_columns(symbols, start_ms, minutes, seed, ticks_per_minute):
        pending = [
            batch
            for columns in chunk
            for batch in batches(
                exchange, columns.symbol, columns.times, columns.prices, columns.amounts,
                source=SOURCE, batch_ms=batch_ms, max_batch=max_batch,
            )
        ]
        order = {symbol: i for i, symbol in enumerate(symbols)}
        pending.sort(key=lambda b: (b.times[0] // batch_ms, order[b.symbol], b.times[0]))
        yield from pending


def candles_from_columns(columns: TickColumns, exchange: str) -> list[Candle]:
    """The 1-minute candles of a chunk of ticks: what an event-time candle builder makes of them."""
    starts, ends = columns.minute_starts, np.append(columns.minute_starts[1:], len(columns.times))
    highs = np.maximum.reduceat(columns.prices, starts)
    lows = np.minimum.reduceat(columns.prices, starts)
    volumes = np.add.reduceat(columns.amounts, starts)
    rows = zip(
        columns.minute_times.tolist(), (ends - starts).tolist(), columns.prices[starts].tolist(), highs.tolist(),
        lows.tolist(), columns.prices[ends - 1].tolist(), volumes.tolist(), strict=True,
    )
    return [
        make_candle(exchange, columns.symbol, "1m", ts, (o, h, lo, c, v), source=SOURCE, trades=count)
        for ts, count, o, h, lo, c, v in rows
    ]


def generate_candles(
    symbols: Sequence[str],
    start_ms: int,
    minutes: int,
    seed: int,
    ticks_per_minute: float = 60.0,
    *,
    exchange: str = DEFAULT_EXCHANGE,
) -> Iterator[Candle]:
    """1-minute candles of every symbol, ascending by time (symbols in the order given within a minute)."""
    for chunk in generate_columns(symbols, start_ms, minutes, seed, ticks_per_minute):
        per_symbol = [candles_from_columns(columns, exchange) for columns in chunk]
        for minute in zip(*per_symbol, strict=True):
            yield from minute
