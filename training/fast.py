"""The fast path: a compiled (numba) replay of `ExecutionSimulator` over a strategy's vectorised signals.

Optimisation evaluates thousands of parameter sets, so the per-bar Python cost of the event path matters. This
kernel runs the simulator's rules for market entries and exits over whole numpy columns: fills at the next open
(or at the close), slippage, taker/maker fees, the OCO bracket with gaps and the conservative same-bar rule, the
sizing rules and caps of `agents.execution.risk`, the same order-sequence numbering (so order, fill and trade ids
are the same) and the same floating-point operations in the same order, so results are bit-identical.

It is a second implementation of the simulator's rules, so `tests/parity/test_fast_path.py` runs both over many
strategies, parameter sets and execution settings and requires identical trades and equity curves. Where the
kernel does not model something (limit/stop entries, lower-timeframe intrabar resolution), `run_fast` returns
None and callers use the event path.
"""

from __future__ import annotations

import logging

import numba
import numpy as np

from agents.bars import BarSeries
from agents.execution.simulator import Fill, Rejection, Trade
from agents.strategies.base import Strategy
from streams.keys import stable_id
from training.backtest import BacktestConfig, BacktestResult, Records
from training.metrics import TradeTable

logger = logging.getLogger(__name__)

SIZING_CODES = {"all_in": 0, "fixed_fraction": 1, "risk_per_trade": 2}
REASONS = ("entry", "signal", "stop_loss", "take_profit", "end_of_data")
REJECTIONS = ("bracket on the wrong side of the fill price", "the size rounds to zero or is refused by the sizing",
              "short entries are disabled")
_ENTRY, _SIGNAL, _STOP, _TARGET, _END = range(5)
# Columns of the integer fill table the kernel returns.
_F_SEQ, _F_ORDER_TS, _F_TS, _F_BUY, _F_MAKER, _F_REASON = range(6)


@numba.njit(cache=True)
def _slipped(price: float, slip: float, buying: bool) -> float:
    if slip == 0.0:
        return price
    return price * (1.0 + slip) if buying else price * (1.0 - slip)


@numba.njit(cache=True)
def _size(sizing: int, fraction: float, max_fraction: float, lot: float, min_notional: float,
          cash: float, equity: float, price: float, stop_loss: float, fee_rate: float) -> float:
    """`agents.execution.risk.position_size`, returning 0.0 for a refusal."""
    if price <= 0 or cash <= 0 or equity <= 0:
        return 0.0
    unit_cost = price * (1 + fee_rate)
    if sizing == 0:
        wanted = cash / unit_cost
    elif sizing == 1:
        wanted = equity * fraction / unit_cost
    else:
        if np.isnan(stop_loss):
            return 0.0
        distance = abs(price - stop_loss)
        if distance == 0:
            return 0.0
        wanted = equity * fraction / distance
    quantity = min(wanted, equity * max_fraction / unit_cost, cash / unit_cost)
    units = np.floor(quantity / lot)
    quantity = units * lot
    if units <= 0:
        return 0.0
    if quantity * price < min_notional:
        return 0.0
    return quantity


@numba.njit(cache=True)
def _record_fill(fills_i, fills_f, row, seq, order_ts, ts, buy, maker, reason, quantity, price, fee):
    fills_i[row, _F_SEQ] = seq
    fills_i[row, _F_ORDER_TS] = order_ts
    fills_i[row, _F_TS] = ts
    fills_i[row, _F_BUY] = buy
    fills_i[row, _F_MAKER] = maker
    fills_i[row, _F_REASON] = reason
    fills_f[row, 0] = quantity
    fills_f[row, 1] = price
    fills_f[row, 2] = fee


@numba.njit(cache=True)
def _reject(rejections, row, ts, seq, order_ts, code):
    rejections[row, 0] = ts
    rejections[row, 1] = seq
    rejections[row, 2] = order_ts
    rejections[row, 3] = code


@numba.njit(cache=True)
def _close(side, quantity, entry_price, entry_fee, entry_row, price, rate, maker, reason, seq, order_ts, ts, cash,
           fills_i, fills_f, n_fills, trades, n_trades):
    """`ExecutionSimulator._close`; returns the cash and the new fill and trade counts."""
    fee = quantity * price * rate
    if side == 1:
        cash += quantity * price - fee
        gross = quantity * (price - entry_price)
    else:
        cash -= quantity * price + fee
        gross = quantity * (entry_price - price)
    _record_fill(fills_i, fills_f, n_fills, seq, order_ts, ts, 1 if side == -1 else 0, maker, reason, quantity,
                 price, fee)
    trades[n_trades, 0] = entry_row
    trades[n_trades, 1] = n_fills
    trades[n_trades, 2] = gross - entry_fee - fee
    return cash, n_fills + 1, n_trades + 1


@numba.njit(cache=True)
def _kernel(ts, open_, high, low, close, span, enter_long, exit_long, enter_short, exit_short, stop_arr, target_arr,
            warmup, cash, fee, maker_fee, slip, close_mode, allow_short, sizing, fraction, max_fraction, lot,
            min_notional, finalize):  # pragma: no cover - compiled; covered through run_fast
    n = len(ts)
    equity = np.empty(n - warmup)
    fills_i = np.empty((2 * n + 2, 6), dtype=np.int64)
    fills_f = np.empty((2 * n + 2, 3))
    trades = np.empty((n + 1, 3))  # entry fill row, exit fill row, pnl
    rejections = np.empty((2 * n + 2, 4), dtype=np.int64)  # ts, seq (-1: none), order ts, code
    n_fills = 0
    n_trades = 0
    n_rejections = 0
    seq = 0
    side = 0  # 1 long, -1 short, 0 flat
    quantity = 0.0
    entry_price = 0.0
    entry_fee = 0.0
    entry_row = -1
    sl = np.nan
    tp = np.nan
    # market orders placed at the last close (next_open mode): an exit and/or an entry
    exit_order = False
    exit_seq = 0
    exit_ts = 0
    entry_order = 0  # side of the working entry, 0 when none
    entry_seq = 0
    entry_ts = 0
    entry_sl = np.nan
    entry_tp = np.nan
    for j in range(n):
        bar_ts = ts[j]
        o = open_[j]
        # process_bar: working orders, exits first
        if exit_order and side != 0:
            cash, n_fills, n_trades = _close(
                side, quantity, entry_price, entry_fee, entry_row, _slipped(o, slip, side == -1), fee, 0, _SIGNAL,
                exit_seq, exit_ts, bar_ts, cash, fills_i, fills_f, n_fills, trades, n_trades)
            side = 0
        exit_order = False
        if entry_order != 0 and side == 0:
            long = entry_order == 1
            side, quantity, entry_price, entry_fee, entry_row, cash, n_fills, n_rejections = _open(
                long, _slipped(o, slip, long), entry_sl, entry_tp, entry_seq, entry_ts, bar_ts, fee, cash, sizing,
                fraction, max_fraction, lot, min_notional, fills_i, fills_f, n_fills, rejections, n_rejections)
            sl, tp = entry_sl, entry_tp
        entry_order = 0
        # process_bar: the bracket
        if side != 0 and (not np.isnan(sl) or not np.isnan(tp)):
            long = side == 1
            hit = -1
            price = 0.0
            if not np.isnan(sl) and (o <= sl if long else o >= sl):
                hit, price = _STOP, _slipped(o, slip, not long)
            elif not np.isnan(tp) and (o >= tp if long else o <= tp):
                hit, price = _TARGET, o
            elif not np.isnan(sl) and (low[j] <= sl if long else high[j] >= sl):
                hit, price = _STOP, _slipped(sl, slip, not long)
            elif not np.isnan(tp) and (high[j] >= tp if long else low[j] <= tp):
                hit, price = _TARGET, tp
            if hit >= 0:
                seq += 1
                maker = 1 if hit == _TARGET else 0
                cash, n_fills, n_trades = _close(
                    side, quantity, entry_price, entry_fee, entry_row, price, maker_fee if maker else fee, maker,
                    hit, seq, bar_ts, bar_ts, cash, fills_i, fills_f, n_fills, trades, n_trades)
                side = 0
        if j < warmup:
            continue
        # submit: the bar's intents, exits before entries
        close_ts = bar_ts + span
        c = close[j]
        for exit_side in (1, -1):
            wants = exit_long[j] if exit_side == 1 else exit_short[j]
            if wants and side == exit_side and not exit_order:
                seq += 1
                if close_mode:
                    cash, n_fills, n_trades = _close(
                        side, quantity, entry_price, entry_fee, entry_row, _slipped(c, slip, side == -1), fee, 0,
                        _SIGNAL, seq, close_ts, close_ts, cash, fills_i, fills_f, n_fills, trades, n_trades)
                    side = 0
                else:
                    exit_order, exit_seq, exit_ts = True, seq, close_ts
        for entry_side in (1, -1):
            wants = enter_long[j] if entry_side == 1 else enter_short[j]
            if not wants or (side != 0 and not exit_order) or entry_order != 0:
                continue
            if entry_side == -1 and not allow_short:
                _reject(rejections, n_rejections, close_ts, -1, 0, 2)
                n_rejections += 1
                continue
            seq += 1
            if close_mode and side == 0:
                side, quantity, entry_price, entry_fee, entry_row, cash, n_fills, n_rejections = _open(
                    entry_side == 1, _slipped(c, slip, entry_side == 1), stop_arr[j], target_arr[j], seq, close_ts,
                    close_ts, fee, cash, sizing, fraction, max_fraction, lot, min_notional, fills_i, fills_f,
                    n_fills, rejections, n_rejections)
                sl, tp = stop_arr[j], target_arr[j]
            else:
                entry_order, entry_seq, entry_ts = entry_side, seq, close_ts
                entry_sl, entry_tp = stop_arr[j], target_arr[j]
        if side == 0:
            equity[j - warmup] = cash
        else:
            equity[j - warmup] = cash + (quantity if side == 1 else -quantity) * c
    if finalize and n > warmup and side != 0:
        seq += 1
        close_ts = ts[n - 1] + span
        cash, n_fills, n_trades = _close(
            side, quantity, entry_price, entry_fee, entry_row, _slipped(close[n - 1], slip, side == -1), fee, 0,
            _END, seq, close_ts, close_ts, cash, fills_i, fills_f, n_fills, trades, n_trades)
        equity[-1] = cash
    return equity, fills_i[:n_fills], fills_f[:n_fills], trades[:n_trades], rejections[:n_rejections]


@numba.njit(cache=True)
def _open(long, price, sl, tp, seq, order_ts, fill_ts, fee, cash, sizing, fraction, max_fraction, lot,
          min_notional, fills_i, fills_f, n_fills, rejections, n_rejections):  # pragma: no cover - compiled
    """`ExecutionSimulator._open` for a market entry while flat; returns the position (side 0 if refused)."""
    if (not np.isnan(sl) and (sl >= price if long else sl <= price)) or (
        not np.isnan(tp) and (tp <= price if long else tp >= price)
    ):
        _reject(rejections, n_rejections, fill_ts, seq, order_ts, 0)
        return 0, 0.0, 0.0, 0.0, -1, cash, n_fills, n_rejections + 1
    quantity = _size(sizing, fraction, max_fraction, lot, min_notional, cash, cash, price, sl, fee)
    if quantity <= 0:
        _reject(rejections, n_rejections, fill_ts, seq, order_ts, 1)
        return 0, 0.0, 0.0, 0.0, -1, cash, n_fills, n_rejections + 1
    entry_fee = quantity * price * fee
    if long:
        cash -= quantity * price + entry_fee
    else:
        cash += quantity * price - entry_fee
    _record_fill(fills_i, fills_f, n_fills, seq, order_ts, fill_ts, 1 if long else 0, 0, _ENTRY, quantity, price,
                 entry_fee)
    return 1 if long else -1, quantity, price, entry_fee, n_fills, cash, n_fills + 1, n_rejections


def run_fast(
    strategy: Strategy,
    series: BarSeries,
    config: BacktestConfig,
    *,
    warmup: int = 0,
    lower: BarSeries | None = None,
) -> BacktestResult | None:
    """The event path's result, compiled; None when the strategy or the settings need the event path."""
    execution, risk = config.execution, config.risk
    if execution.intrabar == "lower_timeframe" and lower is not None:
        return None
    signals = strategy.signals(series)
    if signals is None:
        return None
    equity, fills_i, fills_f, trades, rejected = _kernel(
        series.ts, series.open, series.high, series.low, series.close, series.span_ms,
        signals.enter_long, signals.exit_long, signals.enter_short, signals.exit_short,
        signals.stop_loss, signals.take_profit, warmup, float(config.cash), execution.fee_rate,
        execution.maker_rate, execution.slippage_bps / 10_000.0, execution.fill == "close", execution.allow_short,
        SIZING_CODES[risk.sizing], risk.fraction, risk.max_position_fraction, risk.lot_size, risk.min_notional,
        config.finalize,
    )
    table = TradeTable(
        fills_i[trades[:, 0].astype(np.int64), _F_TS], fills_i[trades[:, 1].astype(np.int64), _F_TS], trades[:, 2],
        fills_f[trades[:, 0].astype(np.int64), 0] * fills_f[trades[:, 0].astype(np.int64), 1],
        fills_f[trades[:, 0].astype(np.int64), 2] + fills_f[trades[:, 1].astype(np.int64), 2],
    )
    return BacktestResult(series, warmup, equity, table,
                          lambda: _records(config.scope, fills_i, fills_f, trades, rejected), config.cash, "fast")


def _records(scope: str, fills_i: np.ndarray, fills_f: np.ndarray, trades: np.ndarray, rejected: np.ndarray) -> Records:
    """Python records, with the simulator's ids, from the kernel's tables."""
    fills: list[Fill] = []
    for (seq, order_ts, ts, buy, maker, reason), (quantity, price, fee) in zip(
        fills_i.tolist(), fills_f.tolist(), strict=True
    ):
        order_id = stable_id("order", scope, order_ts, seq)
        fills.append(Fill(stable_id("fill", order_id), order_id, ts, "buy" if buy else "sell", quantity, price, fee,
                          "maker" if maker else "taker", REASONS[reason]))
    closed: list[Trade] = []
    for entry_row, exit_row, pnl in trades.tolist():
        entry, exit_fill = fills[int(entry_row)], fills[int(exit_row)]
        closed.append(Trade(
            stable_id("trade", scope, entry.order_id), "long" if entry.side == "buy" else "short", entry.quantity,
            entry.ts, entry.price, exit_fill.ts, exit_fill.price, pnl, entry.fee + exit_fill.fee, exit_fill.reason,
            entry.order_id, exit_fill.order_id,
        ))
    rejections = [
        Rejection(ts, stable_id("order", scope, order_ts, seq) if seq >= 0 else "", REJECTIONS[code])
        for ts, seq, order_ts, code in rejected.tolist()
    ]
    return closed, fills, rejections
