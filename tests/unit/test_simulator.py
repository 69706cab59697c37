"""The execution simulator on hand-built bars: fills, costs, brackets, order types, sizing, refusals."""

from __future__ import annotations

import orjson
import pytest

from agents.bars import Bar
from agents.execution.risk import RiskConfig, position_size
from agents.execution.simulator import Events, ExecutionConfig, ExecutionSimulator
from agents.strategies.base import enter, exit_

HOUR = 3_600_000


def bar(i: int, o: float, h: float, low: float, c: float) -> Bar:
    return Bar(i * HOUR, o, h, low, c, 10.0)


def sim(cash: float = 1000.0, risk: RiskConfig | None = None, **execution: object) -> ExecutionSimulator:
    config = ExecutionConfig(**{"fee_rate": 0.0, **execution})  # type: ignore[arg-type]
    return ExecutionSimulator(config, risk or RiskConfig(lot_size=1e-8), cash, HOUR, "test")


def step(s: ExecutionSimulator, b: Bar, *intents: object) -> Events:
    events = s.process_bar(b)
    events.extend(s.submit(list(intents), b))  # type: ignore[arg-type]
    return events


def test_market_orders_fill_at_the_next_open_with_fees_on_both_sides() -> None:
    s = sim(1000.0, fee_rate=0.001)
    step(s, bar(0, 100, 101, 99, 100), enter("long"))
    assert s.position is None  # nothing fills at the signal's close
    events = step(s, bar(1, 100, 102, 99, 101))
    fill = events.fills[0]
    assert (fill.ts, fill.side, fill.price, fill.liquidity) == (HOUR, "buy", 100.0, "taker")
    assert fill.quantity == pytest.approx(1000.0 / (100 * 1.001), abs=1e-8) and fill.quantity * 100 * 1.001 <= 1000
    step(s, bar(2, 105, 106, 104, 105), exit_("long"))
    events = step(s, bar(3, 110, 111, 109, 110))
    trade = events.trades[0]
    q = fill.quantity
    assert (trade.entry_price, trade.exit_price, trade.exit_reason, trade.exit_ts) == (100.0, 110.0, "signal", 3 * HOUR)
    assert trade.fees == pytest.approx(q * 100 * 0.001 + q * 110 * 0.001)
    assert trade.pnl == pytest.approx(q * 10 - trade.fees)
    assert s.cash == pytest.approx(1000.0 + trade.pnl)
    assert s.equity(123.0) == s.cash


def test_close_mode_fills_market_intents_at_the_signal_bar_close() -> None:
    s = sim(1000.0, fill="close")
    events = step(s, bar(0, 100, 101, 99, 100), enter("long"))
    assert events.fills[0].price == 100.0 and events.fills[0].ts == HOUR
    events = step(s, bar(1, 100, 120, 99, 110), exit_("long"))
    assert events.trades[0].exit_price == 110.0 and events.trades[0].pnl == pytest.approx(100.0)


def test_slippage_moves_market_fills_against_the_trader() -> None:
    s = sim(1000.0, slippage_bps=10.0)
    step(s, bar(0, 100, 101, 99, 100), enter("long"))
    assert step(s, bar(1, 100, 101, 99, 100), exit_("long")).fills[0].price == pytest.approx(100.1)
    assert step(s, bar(2, 100, 101, 99, 100)).fills[0].price == pytest.approx(99.9)


def test_stop_loss_inside_the_bar_fills_at_the_level_and_take_profit_at_its_limit_with_the_maker_fee() -> None:
    s = sim(1000.0, fee_rate=0.002, maker_fee_rate=0.0005)
    step(s, bar(0, 100, 101, 99, 100), enter("long", stop_loss=95.0, take_profit=110.0))
    step(s, bar(1, 100, 104, 98, 103))
    events = step(s, bar(2, 103, 111, 101, 109))
    trade, fill = events.trades[0], events.fills[0]
    assert (trade.exit_reason, trade.exit_price, fill.liquidity) == ("take_profit", 110.0, "maker")
    assert fill.fee == pytest.approx(fill.quantity * 110.0 * 0.0005)

    s = sim(1000.0, slippage_bps=20.0)
    step(s, bar(0, 100, 101, 99, 100), enter("long", stop_loss=95.0, take_profit=110.0))
    events = step(s, bar(1, 100, 101, 94, 96))
    assert events.trades[0].exit_reason == "stop_loss"
    assert events.trades[0].exit_price == pytest.approx(95.0 * (1 - 0.002))  # a stop fills as a market order


def test_both_levels_in_one_bar_count_as_the_stop_unless_lower_bars_show_the_target_first() -> None:
    both = bar(1, 100, 111, 94, 100)
    s = sim()
    step(s, bar(0, 100, 101, 99, 100), enter("long", stop_loss=95.0, take_profit=110.0))
    assert s.process_bar(both).trades[0].exit_reason == "stop_loss"

    def minutes(*ranges: tuple[float, float]) -> list[Bar]:
        return [Bar(HOUR + k * 60_000, 100, h, low, 100, 1.0) for k, (h, low) in enumerate(ranges)]

    for lower, expected in (
        (minutes((101, 99), (111, 100), (100, 94)), "take_profit"),
        (minutes((101, 94), (111, 100)), "stop_loss"),
        (minutes((101, 99), (111, 94)), "stop_loss"),  # both inside one lower bar: still unknown, so the stop
    ):
        s = sim(intrabar="lower_timeframe")
        step(s, bar(0, 100, 101, 99, 100), enter("long", stop_loss=95.0, take_profit=110.0))
        assert s.process_bar(both, lambda lower=lower: lower).trades[0].exit_reason == expected


def test_a_gap_through_a_level_fills_at_the_open() -> None:
    s = sim()
    step(s, bar(0, 100, 101, 99, 100), enter("long", stop_loss=95.0, take_profit=110.0))
    step(s, bar(1, 100, 101, 99, 100))
    trade = step(s, bar(2, 90, 92, 88, 91)).trades[0]
    assert (trade.exit_reason, trade.exit_price) == ("stop_loss", 90.0)
    s = sim()
    step(s, bar(0, 100, 101, 99, 100), enter("long", stop_loss=95.0, take_profit=110.0))
    step(s, bar(1, 100, 101, 99, 100))
    trade = step(s, bar(2, 115, 116, 112, 113)).trades[0]
    assert (trade.exit_reason, trade.exit_price) == ("take_profit", 115.0)


def test_an_entry_whose_bracket_the_open_already_passed_is_refused() -> None:
    s = sim()
    step(s, bar(0, 100, 101, 99, 100), enter("long", stop_loss=95.0))
    events = step(s, bar(1, 94, 96, 93, 95))
    assert s.position is None and not events.fills
    assert "wrong side" in events.rejections[0].reason


def test_limit_entries_fill_at_their_price_or_a_better_open_and_expire() -> None:
    s = sim()
    step(s, bar(0, 100, 101, 99, 100), enter("long", order_type="limit", price=97.0, valid_bars=2))
    assert not step(s, bar(1, 100, 101, 98, 99)).fills  # not reached
    fill = step(s, bar(2, 99, 99, 96, 97)).fills[0]
    assert (fill.price, fill.liquidity) == (97.0, "maker")
    s = sim()
    step(s, bar(0, 100, 101, 99, 100), enter("long", order_type="limit", price=97.0))
    assert step(s, bar(1, 95, 96, 94, 95)).fills[0].price == 95.0  # opened below the limit
    s = sim()
    step(s, bar(0, 100, 101, 99, 100), enter("long", order_type="limit", price=90.0, valid_bars=1))
    events = step(s, bar(1, 100, 101, 98, 99))
    assert not s.orders and events.rejections[0].reason == "limit entry expired"


def test_stop_entries_trigger_at_their_level_and_then_only_the_stop_loss_is_checked_in_that_bar() -> None:
    s = sim()
    step(s, bar(0, 100, 101, 99, 100), enter("long", order_type="stop", price=105.0, stop_loss=98.0,
                                             take_profit=108.0))
    events = step(s, bar(1, 101, 109, 100, 107))  # reaches 105, then 108 too: the target is not credited
    assert events.fills[0].price == 105.0 and s.position is not None and not events.trades
    s = sim()
    step(s, bar(0, 100, 101, 99, 100), enter("long", order_type="stop", price=105.0, stop_loss=98.0))
    events = step(s, bar(1, 101, 106, 97, 99))  # triggered and the stop-loss inside the same bar: the worst case
    assert events.trades[0].exit_reason == "stop_loss"


def test_one_position_at_a_time_and_exit_plus_entry_reverses() -> None:
    s = sim(allow_short=True)
    step(s, bar(0, 100, 101, 99, 100), enter("long"))
    step(s, bar(1, 100, 101, 99, 100), enter("long"), exit_("short"))  # ignored: already long, not short
    assert not s.orders and s.position is not None and s.position.side == "long"
    step(s, bar(2, 100, 101, 99, 100), exit_("long"), enter("short"))
    events = step(s, bar(3, 90, 91, 89, 90))
    assert [f.side for f in events.fills] == ["sell", "sell"]
    assert events.trades[0].side == "long" and s.position is not None and s.position.side == "short"
    step(s, bar(4, 90, 91, 89, 80), exit_("short"))
    trade = step(s, bar(5, 80, 81, 79, 80)).trades[0]
    assert trade.side == "short" and trade.pnl == pytest.approx(trade.quantity * 10.0)


def test_short_entries_are_refused_unless_allowed() -> None:
    s = sim()
    events = step(s, bar(0, 100, 101, 99, 100), enter("short"))
    assert events.rejections[0].reason == "short entries are disabled" and not s.orders


def test_close_all_ends_the_position_at_the_close() -> None:
    s = sim()
    step(s, bar(0, 100, 101, 99, 100), enter("long"))
    step(s, bar(1, 100, 101, 99, 100))
    trade = s.close_all(bar(2, 100, 121, 99, 120)).trades[0]
    assert (trade.exit_price, trade.exit_reason, trade.exit_ts) == (120.0, "end_of_data", 3 * HOUR)


def test_a_restored_simulator_continues_exactly() -> None:
    bars = [bar(i, 100 + i, 102 + i, 99 + i, 101 + i) for i in range(6)]
    plan = {0: [enter("long", stop_loss=90.0, take_profit=104.5)], 3: [enter("long")], 4: [exit_("long")]}

    def run(s: ExecutionSimulator, start: int, stop: int) -> list[object]:
        out: list[object] = []
        for i in range(start, stop):
            out += step(s, bars[i], *plan.get(i, [])).fills
        return out

    whole = run(sim(), 0, 6)
    first = sim()
    head = run(first, 0, 2)
    restored = ExecutionSimulator.from_state(orjson.loads(orjson.dumps(first.to_state())))
    assert head + run(restored, 2, 6) == whole and len(whole) == 4


def test_sizing_rules() -> None:
    common = {"cash": 1000.0, "equity": 1000.0, "price": 50.0, "fee_rate": 0.0}
    assert position_size(RiskConfig(), stop_loss=None, **common).quantity == pytest.approx(20.0)
    assert position_size(RiskConfig("fixed_fraction", 0.25), stop_loss=None, **common).quantity == pytest.approx(5.0)
    risk = position_size(RiskConfig("risk_per_trade", 0.01), stop_loss=48.0, **common)
    assert risk.quantity == pytest.approx(5.0)  # loses 1% of equity (10) over a 2.0 stop distance
    capped = position_size(RiskConfig("risk_per_trade", 0.05, max_position_fraction=0.5), stop_loss=49.9, **common)
    assert capped.quantity == pytest.approx(10.0)  # capped at half the equity
    assert "needs a stop-loss" in position_size(RiskConfig("risk_per_trade", 0.01), stop_loss=None, **common).refusal
    assert position_size(RiskConfig(lot_size=0.001), stop_loss=None, **{**common, "price": 333.0}).quantity == 3.003
    small = position_size(RiskConfig(min_notional=2000.0), stop_loss=None, **common)
    assert small.quantity == 0 and "below the minimum" in small.refusal
    fee = position_size(RiskConfig(), stop_loss=None, **{**common, "fee_rate": 0.01})
    assert fee.quantity * 50 * 1.01 <= 1000.0 < (fee.quantity + 1e-8) * 50 * 1.01


@pytest.mark.parametrize("bad", [{"sizing": "martingale"}, {"fraction": 0.0}, {"fraction": 1.5},
                                 {"lot_size": 0.0}, {"max_position_fraction": 2.0}])
def test_invalid_risk_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RiskConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [{"fee_rate": -0.1}, {"fill": "vwap"}, {"intrabar": "optimistic"},
                                 {"slippage_bps": -1.0}])
def test_invalid_execution_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ExecutionConfig(**bad)  # type: ignore[arg-type]
