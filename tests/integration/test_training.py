"""Backtests and training against the real broker and database: sources agree, replays repeat, studies are stored
trial by trial, resume after a crash and can be shared by two processes; bad input is refused before any write."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from streams.records import TrainingProgress
from streams.replay import read_records
from streams.topics import TRAINING_PROGRESS
from tests.pipeline_helpers import settings_env, wait_until
from tradepulse.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo"
FIXTURES = ROOT / "tests" / "data"
SMA = ["--strategy", "sma_cross", "--param", "fast=10", "--param", "slow=30"]


def tradepulse(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tradepulse.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=settings_env(settings), stdin=subprocess.DEVNULL)


def start(settings: Settings, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tradepulse.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=settings_env(settings), stdin=subprocess.DEVNULL)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0
    assert message in result.stderr + result.stdout, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout


def rows(settings: Settings, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.database.url) as conn:
        return conn.execute(query, params).fetchall()


def count(settings: Settings, table: str) -> int:
    return int(rows(settings, f"SELECT count(*) FROM {table}")[0][0])


def imported(settings: Settings, *files: str) -> None:
    ok(tradepulse(settings, "data", "import", *(str(DEMO / f) for f in files)))


def backtest_json(settings: Settings, *args: str) -> dict[str, Any]:
    return json.loads(ok(tradepulse(settings, "backtest", *SMA, "--json", *args)).stdout)


def same_run(a: dict[str, Any], b: dict[str, Any]) -> None:
    ignored = {"backtest_run_id"}
    assert {k: v for k, v in a.items() if k not in ignored} == {k: v for k, v in b.items() if k not in ignored}


def test_topic_table_and_csv_give_the_same_backtest(settings: Settings) -> None:
    imported(settings, "bitfinex_btcusd_1h.csv")
    where = ["--exchange", "bitfinex", "--symbol", "BTC/USD", "--timeframe", "1h"]
    from_topic = backtest_json(settings, "--source", "topic", *where)
    from_table = backtest_json(settings, "--source", "table", *where)
    from_csv = backtest_json(settings, "--csv", str(DEMO / "bitfinex_btcusd_1h.csv"))
    assert from_topic["bars"] == 17_583 and from_topic["trades"] > 100
    same_run(from_topic, from_table)
    same_run(from_topic, from_csv)
    stored = rows(settings, "SELECT strategy, params, symbols, metrics->>'final_equity', data_hash, code_version "
                            "FROM backtest_runs ORDER BY started_at")
    assert len(stored) == 2  # topic and table runs are recorded; a CSV run is not
    assert stored[0][:3] == ("sma_cross", {"fast": 10, "slow": 30}, ["BTC/USD"])
    assert float(stored[0][3]) == from_topic["final_equity"] and stored[0][4] == from_topic["data_hash"]


def test_two_replays_of_a_topic_range_give_identical_trades(settings: Settings) -> None:
    imported(settings, "bitfinex_btcusd_1h.csv")
    args = ["--source", "topic", "--exchange", "bitfinex", "--symbol", "BTC/USD", "--from", "2018-01-01",
            "--to", "2018-07-01"]
    first, second = backtest_json(settings, *args), backtest_json(settings, *args)
    assert first["trade_list"] and first["trade_list"] == second["trade_list"]
    same_run(first, second)
    assert first["bars"] == 181 * 24


@pytest.mark.parametrize(("args", "message"), [
    (["--strategy", "no_such"], "unknown strategy 'no_such'"),
    (["--strategy", "sma_cross", "--param", "fast=1"], "parameter 'fast' = 1 is outside 2..400"),
    (["--strategy", "sma_cross", "--param", "fast=ten"], "parameter 'fast' must be an integer"),
    (["--strategy", "sma_cross", "--param", "fast=50", "--param", "slow=20"], "fast (50) must be shorter"),
    (["--strategy", "sma_cross", "--param", "speed=3"], "sma_cross has no parameter 'speed'"),
    (["--strategy", "sma_cross", "--from", "2019-01-01", "--to", "2018-01-01"], "the range is empty"),
    (["--strategy", "sma_cross", "--from", "2030-01-01"], "no candles for bitfinex BTC/USD 1h"),
    (["--strategy", "sma_cross", "--from", "2019-07-03"], "are too few"),
    (["--strategy", "sma_cross", "--sizing", "martingale"], "unknown sizing"),
])
def test_bad_backtest_input_is_refused_and_nothing_is_written(settings: Settings, args: list[str],
                                                              message: str) -> None:
    imported(settings, "bitfinex_btcusd_1h.csv")
    refused(tradepulse(settings, "backtest", "--source", "table", "--exchange", "bitfinex", "--symbol", "BTC/USD",
                       *args), message)
    assert count(settings, "backtest_runs") == 0


def test_corrupt_candles_are_reported_and_never_used(settings: Settings) -> None:
    imported(settings, "bitfinex_btcusd_1h.csv")
    with psycopg.connect(settings.database.url) as conn:  # a close above the high: the table's checks allow it
        conn.execute("UPDATE market_data SET close = high * 2 WHERE ts = '2018-03-01 12:00+00' AND timeframe = '1h'")
    result = tradepulse(settings, "backtest", *SMA, "--source", "table", "--exchange", "bitfinex", "--symbol",
                        "BTC/USD")
    refused(result, "1 corrupt candle(s) in the range")
    assert "2018-03-01 12:00" in result.stderr and "inconsistent OHLC" in result.stderr
    ok(tradepulse(settings, "backtest", *SMA, "--source", "table", "--exchange", "bitfinex", "--symbol", "BTC/USD",
                  "--to", "2018-03-01"))  # the range before it is clean
    refused(tradepulse(settings, "backtest", *SMA, "--csv", str(FIXTURES / "bitfinex_btcusd_bad_1h.csv")),
            "could not be read as candles; none of the file was used")


TRAIN = ["train", "--strategy", "sma_cross", "--symbols", "BTC/USD", "--exchange", "bitfinex", "--timeframe", "1d",
         "--wf-trials", "6", "--wf-windows", "2", "--permutations", "10", "--min-trades", "3"]


def study_trials(settings: Settings) -> dict[str, int]:
    found = rows(settings, "SELECT t.state, count(*) FROM optuna.trials t GROUP BY t.state")
    return {str(state): int(n) for state, n in found}


def test_train_stores_every_trial_and_each_configuration_with_its_evidence(settings: Settings) -> None:
    imported(settings, "bitfinex_btcusd_1d.csv")
    result = ok(tradepulse(settings, *TRAIN, "--method", "tpe", "--trials", "16"))
    assert "trained configurations" in result.stdout
    states = study_trials(settings)
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 16
    mirrored = rows(settings, "SELECT state, params, metrics, objective, data_start, data_end FROM optimization_trials")
    assert len(mirrored) == 16
    assert all(params and "fast" in params for _, params, _, _, _, _ in mirrored)
    assert all((state == "COMPLETE") == (objective is not None) for state, _, _, objective, _, _ in mirrored)
    assert any(state == "PRUNED" and "pruned" in metrics for state, _, metrics, _, _, _ in mirrored)
    configs = rows(settings, "SELECT id, stage, params, in_sample_metrics, out_of_sample_metrics, "
                             "walk_forward_metrics, significance_metrics, data_hash, code_version, stage_reasons, "
                             "data_start, data_end FROM trained_configurations")
    assert 1 <= len(configs) <= 3
    for _, stage, params, ins, oos, wf, sig, data_hash, version, reasons, data_start, data_end in configs:
        assert set(params) == {"fast", "slow"} and params["fast"] < params["slow"]
        assert stage in ("REJECTED", "DISCOVERY", "VALIDATION", "MATURE")
        assert ins["trades"] >= 3 and "sharpe" in oos and wf["window_count"] == 2 and sig["permutations"] == 10
        assert 0 <= sig["deflated_sharpe"] <= 1 and 0 < sig["permutation_pvalue"] <= 1
        assert len(data_hash) == 32 and version.startswith("0.1.0+") and data_start < data_end
        assert (stage == "MATURE") == (reasons == [])
    decisions = rows(settings, "SELECT configuration_id, stage, checks FROM lifecycle_decisions")
    assert len(decisions) == len(configs)
    assert all(len(checks) >= 10 for _, _, checks in decisions)
    linked = rows(settings, "SELECT count(*) FROM optimization_trials WHERE configuration_id IS NOT NULL")
    assert linked[0][0] == len(configs)

    # The same command again continues the finished study: nothing new, nothing duplicated.
    ok(tradepulse(settings, *TRAIN, "--method", "tpe", "--trials", "16"))
    assert count(settings, "optimization_trials") == 16
    assert count(settings, "trained_configurations") == len(configs)
    assert count(settings, "lifecycle_decisions") == len(decisions)

    progress = [p for _, _, p in asyncio.run(read_records(settings, TRAINING_PROGRESS, TrainingProgress))]
    optimise = [p for p in progress if p.stage == "optimise"]
    assert optimise and optimise[-1].done == optimise[-1].total == 16


def test_a_grid_search_covers_the_grid(settings: Settings) -> None:
    imported(settings, "bitfinex_btcusd_1d.csv")
    ok(tradepulse(settings, *TRAIN, "--method", "grid", "--trials", "1000", "--top", "1"))
    states = study_trials(settings)
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 190  # 10 fast x 19 slow values
    invalid = rows(settings, "SELECT count(*) FROM optimization_trials WHERE metrics->>'pruned' LIKE "
                             "'invalid parameters%%'")
    assert invalid[0][0] == 16  # fast >= slow: the 174-point grid is what is left
    assert len(rows(settings, "SELECT DISTINCT params FROM optimization_trials")) == 190


def test_training_resumes_after_the_process_is_killed(settings: Settings) -> None:
    settings = settings.model_copy(update={"training": settings.training.model_copy(
        update={"heartbeat_s": 1, "grace_s": 3})})
    imported(settings, "bitfinex_btcusd_1d.csv")
    args = [*TRAIN, "--method", "random", "--trials", "80"]
    process = start(settings, *args)
    try:
        wait_until(lambda: count(settings, "optimization_trials") >= 15, 120, "some trials stored")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert count(settings, "optimization_trials") < 80
    assert count(settings, "trained_configurations") == 0
    time.sleep(4)  # past the heartbeat grace: the interrupted trial counts as dead
    ok(tradepulse(settings, *args))
    states = study_trials(settings)
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 80
    assert states.get("RUNNING", 0) == 0
    assert count(settings, "optimization_trials") >= 80
    assert count(settings, "trained_configurations") >= 1


def test_two_processes_share_one_study(settings: Settings) -> None:
    imported(settings, "bitfinex_btcusd_1d.csv")
    args = [*TRAIN, "--method", "tpe", "--trials", "60"]
    first, second = start(settings, *args), start(settings, *args)
    for process in (first, second):
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, out[-2000:] + err[-2000:]
    states = study_trials(settings)
    finished = states.get("COMPLETE", 0) + states.get("PRUNED", 0)
    assert 60 <= finished <= 62  # each process stops when the study holds enough; they may overlap by one
    workers = rows(settings, "SELECT DISTINCT value_json FROM optuna.trial_user_attributes WHERE key = 'worker'")
    assert len(workers) == 2, "both processes ran trials of the one study"
    assert len(rows(settings, "SELECT DISTINCT study FROM optimization_trials")) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--strategy", "nope", "--symbols", "BTC/USD"], "unknown strategy 'nope'"),
    (["train", "--strategy", "sma_cross"], "name the --symbols"),
    (["train", "--strategy", "sma_cross", "--symbols", "DOGE/USD", "--exchange", "bitfinex", "--timeframe", "1d"],
     "no candles for bitfinex DOGE/USD 1d"),
    (["train", "--strategy", "sma_cross", "--symbols", "BTC/USD", "--exchange", "bitfinex", "--timeframe", "1d",
      "--from", "2019-01-01"], "fewer than 300"),
    (["train", "--strategy", "sma_cross", "--symbols", "BTC/USD", "--method", "annealing"], "unknown method"),
    (["train", "--strategy", "sma_cross", "--symbols", "BTC/USD", "--objective", "luck"], "unknown objective"),
])
def test_bad_training_input_is_refused_and_nothing_is_written(settings: Settings, args: list[str],
                                                              message: str) -> None:
    imported(settings, "bitfinex_btcusd_1d.csv")
    refused(tradepulse(settings, *args), message)
    assert count(settings, "optimization_trials") == 0
    assert count(settings, "trained_configurations") == 0




def test_train_all_turns_the_demo_data_into_fifty_configurations(settings: Settings) -> None:
    imported(settings, *(p.name for p in sorted(DEMO.glob("*.csv"))))
    result = ok(tradepulse(settings, "train", "--all", "--trials", "8", "--wf-trials", "4", "--wf-windows", "2",
                           "--permutations", "5", "--min-trades", "3", timeout=900))
    found = rows(settings, "SELECT strategy, symbols[1], timeframe, stage FROM trained_configurations")
    assert len(found) >= 50, result.stdout[-2000:]
    assert len({strategy for strategy, _, _, _ in found}) >= 6
    assert len({symbol for _, symbol, _, _ in found}) >= 3
    assert "skipped HTF_SWEEP on BTC/USD 1d" in result.stderr  # no higher timeframe above daily bars
    assert count(settings, "lifecycle_decisions") == len(found)


def test_a_trial_whose_process_died_before_its_first_heartbeat_is_failed_when_the_study_continues(
    settings: Settings,
) -> None:
    import optuna

    from tests.strategy_helpers import random_series
    from training.optimize import SearchSpec, optimise, rdb_storage

    settings = settings.model_copy(update={"training": settings.training.model_copy(update={"grace_s": 2})})
    storage = rdb_storage(settings)
    name = f"orphan-{time.time_ns()}"
    optuna.create_study(study_name=name, storage=storage, direction="maximize")
    orphan = storage.create_new_trial(storage.get_study_id_from_name(name))  # RUNNING, and never a heartbeat
    with psycopg.connect(settings.database.url) as conn:
        conn.execute("UPDATE optuna.trials SET datetime_start = datetime_start - interval '1 minute' "
                     "WHERE trial_id = %s", (orphan,))
    continued = optimise(SearchSpec("sma_cross", method="random", trials=3), random_series(400, 5), study_name=name,
                         storage=storage)
    states = [t.state for t in continued.get_trials(deepcopy=False)]
    assert states.count(optuna.trial.TrialState.RUNNING) == 0
    assert states.count(optuna.trial.TrialState.FAIL) == 1
