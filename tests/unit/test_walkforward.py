"""Walk-forward windows (rolling and anchored) and a small walk-forward run over a synthetic series."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tests.strategy_helpers import random_series
from training.optimize import Objective, SearchSpec
from training.walkforward import WalkForwardResult, WalkForwardSpec, Window, annualised_return, walk_forward, windows

SIZES = [100, 1000, 3000, 12_345]
COUNTS = [1, 3, 4, 7]
FRACTIONS = [0.2, 0.5, 0.7, 0.9]


# --------------------------------------------------------------------------------------------------- the spec


@pytest.mark.parametrize("kwargs", [
    {"windows": 0}, {"windows": -2}, {"mode": "expanding"}, {"train_fraction": 0.1}, {"train_fraction": 0.95},
    {"train_fraction": 0.19999}, {"train_fraction": 0.90001},
])
def test_invalid_specs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        WalkForwardSpec(**kwargs)  # type: ignore[arg-type]


def test_boundary_specs_are_accepted() -> None:
    assert WalkForwardSpec(windows=1, train_fraction=0.2).train_fraction == 0.2
    assert WalkForwardSpec(mode="anchored", train_fraction=0.9).mode == "anchored"


# ---------------------------------------------------------------------------------------------------- windows


def test_rolling_windows_by_hand() -> None:
    # train / test = 0.7 / 0.3: test = int(1000 / (7/3 + 4)) = 157, train = 1000 - 4 * 157 = 372
    assert windows(1000, WalkForwardSpec(windows=4, mode="rolling", train_fraction=0.7)) == [
        Window((0, 372), (372, 529)),
        Window((157, 529), (529, 686)),
        Window((314, 686), (686, 843)),
        Window((471, 843), (843, 1000)),
    ]


def test_anchored_windows_by_hand() -> None:
    # first train = int(1000 * 0.7 / (0.7 + 0.3 * 4)) = 368, test = (1000 - 368) // 4 = 158
    assert windows(1000, WalkForwardSpec(windows=4, mode="anchored", train_fraction=0.7)) == [
        Window((0, 368), (368, 526)),
        Window((0, 526), (526, 684)),
        Window((0, 684), (684, 842)),
        Window((0, 842), (842, 1000)),
    ]


def check_common(result: list[Window], n: int, spec: WalkForwardSpec) -> None:
    assert len(result) == spec.windows
    for w in result:
        assert 0 <= w.train[0] < w.train[1] == w.test[0] < w.test[1] <= n  # train ends where its test starts
    for a, b in itertools.pairwise(result):
        assert a.test[1] == b.test[0]  # consecutive, non-overlapping tests
    lengths = [w.test[1] - w.test[0] for w in result]
    assert len(set(lengths[:-1])) <= 1  # test windows equally long...
    assert 0 <= lengths[-1] - lengths[0] < spec.windows  # ...but the last, which takes the rest of the division


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("fraction", FRACTIONS)
def test_rolling_windows(n: int, count: int, fraction: float) -> None:
    spec = WalkForwardSpec(windows=count, mode="rolling", train_fraction=fraction)
    result = windows(n, spec)
    check_common(result, n, spec)
    assert result[-1].test[1] == n  # the windows cover the data
    trains = {w.train[1] - w.train[0] for w in result}
    assert len(trains) == 1  # a train window of fixed length slides
    train, test = trains.pop(), result[0].test[1] - result[0].test[0]
    assert all(b.train[0] - a.train[0] == test for a, b in itertools.pairwise(result))
    # train / test follows fraction / (1 - fraction), up to the rounding of the test length down
    ratio = fraction / (1 - fraction)
    assert ratio * test - 1e-9 <= train < ratio * test + ratio + count
    if n >= 3000:
        assert train / (train + test) == pytest.approx(fraction, abs=0.01)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("fraction", FRACTIONS)
def test_anchored_windows(n: int, count: int, fraction: float) -> None:
    spec = WalkForwardSpec(windows=count, mode="anchored", train_fraction=fraction)
    result = windows(n, spec)
    check_common(result, n, spec)
    assert all(w.train[0] == 0 for w in result)  # anchored at the first bar
    ends = [w.train[1] for w in result]
    assert all(a < b for a, b in itertools.pairwise(ends))  # and growing
    assert result[-1].test[1] == n  # every bar after the first train window is tested
    first_train, test = result[0].train[1], result[0].test[1] - result[0].test[0]
    if n >= 3000:
        assert first_train / (first_train + test) == pytest.approx(fraction, abs=0.01)


@pytest.mark.parametrize("mode", ["rolling", "anchored"])
def test_a_single_window_is_one_train_test_split(mode: str) -> None:
    (only,) = windows(1000, WalkForwardSpec(windows=1, mode=mode, train_fraction=0.75))  # type: ignore[arg-type]
    assert only == Window((0, 750), (750, 1000))
    # 0.8 / (1 - 0.8) is a hair above 4 in floating point, so the rolling test length may round down by a bar
    (only,) = windows(1000, WalkForwardSpec(windows=1, mode=mode, train_fraction=0.8))  # type: ignore[arg-type]
    assert only.train[0] == 0 and only.train[1] == only.test[0] in (800, 801) and only.test[1] == 1000


# ----------------------------------------------------------------------------------------- annualised_return


def test_annualised_return() -> None:
    day = 86_400_000
    # 1461 daily bars are four years; x 1.4641 = 1.1 ** 4
    metrics = {"bars": 1461, "initial_equity": 1000.0, "final_equity": 1464.1}
    assert annualised_return(metrics, day) == pytest.approx(0.1)
    assert annualised_return({"bars": 0, "initial_equity": 1000.0, "final_equity": 1100.0}, day) is None
    assert annualised_return({"bars": 10, "initial_equity": 1000.0, "final_equity": 0.0}, day) is None
    assert annualised_return({}, day) is None


def test_annualised_return_of_a_short_window_with_a_big_gain_is_none() -> None:
    # three one-minute bars, +10 %: 1.1 ** 175320 has no float (once an OverflowError)
    assert annualised_return({"bars": 3, "initial_equity": 10_000.0, "final_equity": 11_000.0}, 60_000) is None


# --------------------------------------------------------------------------------------------------- walk_forward

SPEC = WalkForwardSpec(windows=3, mode="rolling", train_fraction=0.7, trials=8)


@pytest.fixture(scope="module")
def result() -> WalkForwardResult:
    return walk_forward(SearchSpec("sma_cross", method="random", trials=8), random_series(3000, 11), SPEC)


def test_one_result_per_window(result: WalkForwardResult) -> None:
    assert result.mode == "rolling"
    assert [r.window for r in result.windows] == windows(3000, SPEC)
    for r in result.windows:
        assert len(r.equity) == r.window.test[1] - r.window.test[0]
        if r.params is not None:
            assert set(r.params) == {"fast", "slow"} and r.params["fast"] < r.params["slow"]
            assert r.out_of_sample["bars"] == len(r.equity)
            assert r.in_sample["bars"] == r.window.train[1] - r.window.train[0]
    assert any(r.params is not None for r in result.windows)


def test_stitched_curve_chains_the_test_windows(result: WalkForwardResult) -> None:
    cash = 10_000.0
    tests = [r.window.test for r in result.windows]
    assert len(result.stitched_equity) == sum(stop - start for start, stop in tests)
    series = random_series(3000, 11)
    assert np.array_equal(result.stitched_ts, series.ts[tests[0][0]:tests[-1][1]])
    # the first window is taken as it is: it starts from the initial cash (a market order fills a bar later)
    first = result.windows[0].equity
    assert result.stitched_equity[0] == pytest.approx(cash)
    np.testing.assert_allclose(result.stitched_equity[:len(first)], first, rtol=1e-12)
    # every later window is rescaled to start where the previous one ended
    offset, level = 0, cash
    for r in result.windows:
        segment = result.stitched_equity[offset:offset + len(r.equity)]
        np.testing.assert_allclose(segment, r.equity * (level / cash), rtol=1e-12)
        offset += len(r.equity)
        level = float(segment[-1])
    growth = np.prod([r.equity[-1] / cash for r in result.windows])
    assert result.stitched_equity[-1] == pytest.approx(cash * growth, rel=1e-9)
    assert result.stitched_metrics["final_equity"] == pytest.approx(result.stitched_equity[-1])
    assert result.stitched_metrics["bars"] == len(result.stitched_equity)
    assert result.stitched_metrics["trades"] == sum(len(r.trades) for r in result.windows)


def test_profitable_windows_and_efficiency(result: WalkForwardResult) -> None:
    assert result.profitable_windows == sum(1 for r in result.windows
                                            if (r.out_of_sample.get("total_return_pct") or 0) > 0)
    assert result.efficiency is None or np.isfinite(result.efficiency)


def test_summary_is_json(result: WalkForwardResult) -> None:
    summary = result.summary()
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text) == summary
    assert summary["window_count"] == 3 and summary["mode"] == "rolling"
    assert [w["test"] for w in summary["windows"]] == [list(w.window.test) for w in result.windows]
    assert [w["train"] for w in summary["windows"]] == [list(w.window.train) for w in result.windows]
    assert set(summary["stitched"]) == {"total_return_pct", "cagr_pct", "sharpe", "max_drawdown_pct", "trades",
                                        "win_rate_pct", "profit_factor"}
    assert summary["stitched"]["total_return_pct"] == pytest.approx(result.stitched_metrics["total_return_pct"])


def test_walk_forward_is_reproducible(result: WalkForwardResult) -> None:
    again = walk_forward(SearchSpec("sma_cross", method="random", trials=8), random_series(3000, 11), SPEC)
    assert [r.params for r in again.windows] == [r.params for r in result.windows]
    assert np.array_equal(again.stitched_equity, result.stitched_equity)


def test_windows_where_nothing_qualifies_stay_in_cash() -> None:
    search = SearchSpec("sma_cross", method="random", trials=4, objective=Objective(min_trades=10_000))
    spec = WalkForwardSpec(windows=2, mode="anchored", trials=4)
    flat = walk_forward(search, random_series(1500, 5), spec)
    assert [r.params for r in flat.windows] == [None, None]
    assert np.all(flat.stitched_equity == 10_000.0)
    assert len(flat.stitched_equity) == sum(w.test[1] - w.test[0] for w in windows(1500, spec))
    assert flat.stitched_metrics["total_return_pct"] == 0.0
    assert flat.stitched_metrics["sharpe"] is None
    assert flat.profitable_windows == 0 and flat.efficiency is None
    json.dumps(flat.summary(), allow_nan=False)
