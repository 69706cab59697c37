"""What every worker keeps of configurations, commands and portfolios: validation, halts, day-start equity."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from agents.paper import trading_config
from agents.trading import Control, close_rounds
from streams.records import SCHEMA_VERSION, Command, ConfigChange, PortfolioSnapshot, make_candle

DAY = 86_400_000
RAW = SimpleNamespace(topic="control.configs", partition=0, offset=7, key=b"c1", value=b"{}", timestamp=1.0)


def change(config_id: str = "c1", **overrides: Any) -> ConfigChange:
    values: dict[str, Any] = {
        "event_id": f"e-{config_id}", "ts": 1, "schema_version": SCHEMA_VERSION, "configuration_id": config_id,
        "action": "activate", "strategy": "sma_cross", "params": {}, "exchange": "kraken", "symbols": ["BTC/USDT"],
        "timeframe": "1h", "account_id": "paper-a",
    }
    values.update(overrides)
    return ConfigChange(**values)


def snapshot(ts: int, equity: float, config_id: str | None = None) -> PortfolioSnapshot:
    return PortfolioSnapshot(event_id=f"p{ts}", ts=ts, schema_version=SCHEMA_VERSION, account_id="paper-a",
                             configuration_id=config_id, cash=equity, equity=equity, realized_pnl=0.0,
                             unrealized_pnl=0.0, positions={})


def test_valid_changes_are_indexed_and_invalid_ones_become_dead_letters() -> None:
    control = Control()
    control.apply_change(change("c1"), RAW)
    control.apply_change(change("c2", timeframe="15m"), RAW)
    control.apply_change(change("c3", params={"fast": 50, "slow": 10}), RAW)
    assert sorted(control.configs) == ["c1", "c2"]
    assert [c.configuration_id for c in control.by_instrument[("kraken:BTC/USDT", "1h")]] == ["c1"]
    assert control.rejected_changes[0].reason.startswith("invalid_config: fast (50) must be shorter")
    assert control.rejected_changes[0].offset == 7
    control.apply_change(change("c1", action="deactivate"), RAW)
    assert not control.configs["c1"].active
    assert control.status_updates[-1] == ("c1", "stopping", "")


def test_halts_are_scoped_and_resumable() -> None:
    control = Control()
    config = trading_config(change("c1"))

    def command(action: str, scope: str, target: str) -> Command:
        return Command(event_id=f"{action}{target}", ts=1, schema_version=SCHEMA_VERSION, action=action,
                       scope=scope, target=target, issued_by="ops")

    assert control.halt_reason(config) is None
    control.apply_command(command("halt", "account", "paper-a"))
    assert "halted by ops" in (control.halt_reason(config) or "")
    control.apply_command(command("resume", "account", "paper-a"))
    assert control.halt_reason(config) is None
    control.apply_command(command("halt", "all", ""))
    assert control.halt_reason(config) is not None
    control.apply_command(command("halt", "configuration", "other"))
    control.apply_command(command("resume", "all", ""))
    assert control.halt_reason(config) is None


def test_the_day_start_equity_is_the_first_account_snapshot_of_each_utc_day() -> None:
    control = Control()
    control.apply_snapshot(snapshot(10 * DAY + 5, 1000.0))
    control.apply_snapshot(snapshot(10 * DAY + 500, 900.0))
    assert control.day_start["paper-a"] == ("1970-01-11", 1000.0)
    control.apply_snapshot(snapshot(11 * DAY + 1, 950.0))
    assert control.day_start["paper-a"] == ("1970-01-12", 950.0)
    control.apply_snapshot(snapshot(11 * DAY + 2, 940.0, config_id="c1"))
    assert control.config_snapshots["c1"].equity == 940.0 and control.account_snapshots["paper-a"].equity == 950.0


def test_a_batch_trades_an_instruments_second_candle_of_a_timeframe_in_a_later_round() -> None:
    def close(key: str, timeframe: str, ts: int) -> Any:
        return key, RAW, make_candle("kraken", key, timeframe, ts, (1.0, 1.0, 1.0, 1.0, 1.0), source="test")

    closes = [close("a", "1m", 0), close("b", "1m", 0), close("a", "5m", 0), close("a", "1m", 60_000),
              close("b", "1m", 60_000), close("a", "1m", 120_000)]
    rounds = close_rounds(closes)
    assert [[(k, c.timeframe, c.ts) for k, _, c in round_] for round_ in rounds] == [
        [("a", "1m", 0), ("b", "1m", 0), ("a", "5m", 0)],
        [("a", "1m", 60_000), ("b", "1m", 60_000)],
        [("a", "1m", 120_000)],
    ]
