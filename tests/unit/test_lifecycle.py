"""The lifecycle rules: which stage a configuration's evidence earns, and why it stopped where it did."""

from __future__ import annotations

import json
from typing import Any

import pytest

from training.lifecycle import RULES_VERSION, STAGES, Check, LifecycleRules, decide


def passing() -> dict[str, dict[str, Any]]:
    """Evidence clearing every default rule (with some room), 40 + 12 = 52 trades in all."""
    return {
        "in_sample": {"trades": 40, "total_return_pct": 25.0, "sharpe": 1.2, "profit_factor": 1.5,
                      "max_drawdown_pct": 20.0},
        "out_of_sample": {"trades": 12, "total_return_pct": 5.0},
        "walk_forward": {"stitched": {"total_return_pct": 8.0}, "efficiency": 0.6, "profitable_windows": 3,
                         "window_count": 4},
        "significance": {"deflated_sharpe": 0.97, "permutation_pvalue": 0.01, "stability": 0.8},
    }


def with_value(section: str, key: str, value: object,
               evidence: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    evidence = evidence or passing()
    if section == "walk_forward" and key == "stitched_return":
        evidence["walk_forward"]["stitched"] = {"total_return_pct": value}
    else:
        evidence[section][key] = value
    return evidence


def failed_rules(decision_reasons: list[str]) -> list[str]:
    return [reason.split(": ", 1)[1].split(" is ", 1)[0] for reason in decision_reasons]


# the failing value of each check, next to the boundary value that still passes
DISCOVERY_FAILS = [
    ("in_sample", "trades", 19, 20, "in-sample trades"),
    ("in_sample", "total_return_pct", 0.0, 0.01, "in-sample return %"),
    ("in_sample", "sharpe", 0.49, 0.5, "in-sample Sharpe"),
    ("in_sample", "profit_factor", 1.09, 1.1, "in-sample profit factor"),
    ("in_sample", "max_drawdown_pct", 50.01, 50.0, "in-sample max drawdown %"),
]
VALIDATION_FAILS = [
    ("out_of_sample", "trades", 4, 5, "holdout trades"),
    ("out_of_sample", "total_return_pct", -0.5, 0.01, "holdout return %"),
    ("walk_forward", "stitched_return", 0.0, 0.01, "walk-forward return %"),
    ("walk_forward", "efficiency", 0.29, 0.3, "walk-forward efficiency"),
    ("walk_forward", "profitable_windows", 1, 2, "share of profitable walk-forward windows"),  # of 4 windows
]
MATURE_FAILS = [
    ("significance", "deflated_sharpe", 0.949, 0.95, "deflated Sharpe ratio"),
    ("significance", "permutation_pvalue", 0.051, 0.05, "permutation p-value"),
    ("significance", "stability", 0.49, 0.5, "parameter stability"),
]


def test_evidence_passing_everything_is_mature() -> None:
    decision = decide(passing())
    assert decision.stage == "MATURE"
    assert decision.reasons == []
    assert decision.rules_version == RULES_VERSION
    assert len(decision.checks) == 14
    assert all(c.passed for c in decision.checks)
    assert [c.stage for c in decision.checks] == ["DISCOVERY"] * 5 + ["VALIDATION"] * 5 + ["MATURE"] * 4


@pytest.mark.parametrize(("section", "key", "bad", "ok", "rule"), DISCOVERY_FAILS)
def test_failing_a_discovery_check_rejects(section: str, key: str, bad: object, ok: object, rule: str) -> None:
    decision = decide(with_value(section, key, bad))
    assert decision.stage == "REJECTED"
    assert failed_rules(decision.reasons) == [rule]
    assert decision.reasons[0].startswith(f"DISCOVERY: {rule} is ")
    assert decision.reasons[0].endswith(" - failed")
    assert decide(with_value(section, key, ok)).stage == ("MATURE" if key != "trades" else "VALIDATION")


@pytest.mark.parametrize(("section", "key", "bad", "ok", "rule"), VALIDATION_FAILS)
def test_failing_a_validation_check_stops_at_discovery(section: str, key: str, bad: object, ok: object,
                                                       rule: str) -> None:
    decision = decide(with_value(section, key, bad))
    assert decision.stage == "DISCOVERY"
    assert failed_rules(decision.reasons) == [rule]
    assert decision.reasons[0].startswith(f"VALIDATION: {rule} is ")
    assert decide(with_value(section, key, ok)).stage == ("MATURE" if key != "trades" else "VALIDATION")


@pytest.mark.parametrize(("section", "key", "bad", "ok", "rule"), MATURE_FAILS)
def test_failing_a_mature_check_stops_at_validation(section: str, key: str, bad: object, ok: object,
                                                    rule: str) -> None:
    decision = decide(with_value(section, key, bad))
    assert decision.stage == "VALIDATION"
    assert failed_rules(decision.reasons) == [rule]
    assert decision.reasons[0].startswith(f"MATURE: {rule} is ")
    assert decide(with_value(section, key, ok)).stage == "MATURE"


def test_too_few_trades_in_all_stops_at_validation() -> None:
    # 30 in sample (>= 20) and 10 in the holdout (>= 5) pass their stages, but 40 < 50 in all
    evidence = with_value("out_of_sample", "trades", 10, with_value("in_sample", "trades", 30))
    decision = decide(evidence)
    assert decision.stage == "VALIDATION"
    assert decision.reasons == ["MATURE: total trades is 40 (needs 50) - failed"]


def test_reason_text() -> None:
    decision = decide(with_value("in_sample", "sharpe", 0.41234))
    assert decision.reasons == ["DISCOVERY: in-sample Sharpe is 0.4123 (needs 0.5) - failed"]


@pytest.mark.parametrize(("section", "key", "stage"), [
    ("in_sample", "sharpe", "REJECTED"),
    ("in_sample", "profit_factor", "REJECTED"),
    ("out_of_sample", "total_return_pct", "DISCOVERY"),
    ("walk_forward", "efficiency", "DISCOVERY"),
    ("significance", "deflated_sharpe", "VALIDATION"),
    ("significance", "permutation_pvalue", "VALIDATION"),
])
def test_a_missing_metric_fails_its_check(section: str, key: str, stage: str) -> None:
    for evidence in (with_value(section, key, None), passing()):
        if key in evidence[section] and evidence[section][key] is not None:
            del evidence[section][key]  # absent altogether, as well as None
        decision = decide(evidence)
        assert decision.stage == stage
        assert len(decision.reasons) == 1 and " is missing (needs " in decision.reasons[0]
        missing = [c for c in decision.checks if not c.passed]
        assert len(missing) == 1 and missing[0].value is None


def test_non_numbers_count_as_missing() -> None:
    decision = decide(with_value("in_sample", "sharpe", "1.2"))
    assert decision.stage == "REJECTED"
    assert "missing" in decision.reasons[0]


def test_no_walk_forward_windows_leaves_the_share_missing() -> None:
    evidence = passing()
    evidence["walk_forward"]["window_count"] = 0
    decision = decide(evidence)
    assert decision.stage == "DISCOVERY"
    assert decision.reasons == ["VALIDATION: share of profitable walk-forward windows is missing (needs 0.5) - failed"]


def test_empty_evidence_is_rejected_with_every_discovery_check_named() -> None:
    decision = decide({})
    assert decision.stage == "REJECTED"
    assert failed_rules(decision.reasons) == [rule for _, _, _, _, rule in DISCOVERY_FAILS]
    assert not any(c.passed for c in decision.checks)


def test_no_stage_is_granted_past_a_failed_earlier_stage() -> None:
    # discovery fails while every validation and maturity check passes
    decision = decide(with_value("in_sample", "sharpe", 0.1))
    assert decision.stage == "REJECTED"
    assert all(c.passed for c in decision.checks if c.stage != "DISCOVERY")
    assert failed_rules(decision.reasons) == ["in-sample Sharpe"]
    # validation fails while every maturity check passes
    decision = decide(with_value("walk_forward", "efficiency", -1.0))
    assert decision.stage == "DISCOVERY"
    assert all(c.passed for c in decision.checks if c.stage == "MATURE")


def test_reasons_name_only_the_first_stage_missed() -> None:
    evidence = with_value("out_of_sample", "total_return_pct", -3.0, with_value("significance", "stability", 0.1))
    decision = decide(evidence)
    assert decision.stage == "DISCOVERY"
    assert failed_rules(decision.reasons) == ["holdout return %"]
    assert sum(not c.passed for c in decision.checks) == 2  # the maturity failure is still recorded


def test_checks_json_round_trips() -> None:
    decision = decide(with_value("significance", "deflated_sharpe", None))
    rows = decision.checks_json()
    assert json.loads(json.dumps(rows, allow_nan=False)) == rows
    assert [Check(**row) for row in json.loads(json.dumps(rows))] == decision.checks
    assert set(rows[0]) == {"stage", "rule", "value", "threshold", "passed"}
    assert rows[0] == {"stage": "DISCOVERY", "rule": "in-sample trades", "value": 40.0, "threshold": 20.0,
                       "passed": True}
    assert rows[10]["value"] is None and rows[10]["passed"] is False


def test_thresholds_come_from_the_rules() -> None:
    evidence = passing()
    stricter = LifecycleRules(min_in_sample_trades=50)
    decision = decide(evidence, stricter)
    assert decision.stage == "REJECTED"
    assert decision.reasons == ["DISCOVERY: in-sample trades is 40 (needs 50) - failed"]
    assert decide(evidence, LifecycleRules(min_total_trades=60)).stage == "VALIDATION"
    assert decide(evidence, LifecycleRules(max_permutation_pvalue=0.001)).stage == "VALIDATION"
    assert decide(evidence, LifecycleRules(min_walk_forward_efficiency=0.9)).stage == "DISCOVERY"
    assert decide(evidence, LifecycleRules(max_in_sample_drawdown_pct=10.0)).stage == "REJECTED"


def test_looser_rules_promote_what_the_defaults_reject() -> None:
    evidence = with_value("in_sample", "sharpe", 0.3)
    assert decide(evidence).stage == "REJECTED"
    assert decide(evidence, LifecycleRules(min_in_sample_sharpe=0.25)).stage == "MATURE"
    weak = with_value("significance", "deflated_sharpe", 0.8)
    assert decide(weak).stage == "VALIDATION"
    assert decide(weak, LifecycleRules(min_deflated_sharpe=0.75)).stage == "MATURE"


def test_the_thresholds_recorded_are_the_rules_used() -> None:
    rules = LifecycleRules(min_in_sample_sharpe=0.7, min_stability=0.6)
    thresholds = {c.rule: c.threshold for c in decide(passing(), rules).checks}
    assert thresholds["in-sample Sharpe"] == 0.7
    assert thresholds["parameter stability"] == 0.6
    assert thresholds["in-sample trades"] == 20.0


def test_stage_order() -> None:
    assert STAGES == ("REJECTED", "DISCOVERY", "VALIDATION", "MATURE")
