"""The lifecycle of a trained configuration: DISCOVERY → VALIDATION → MATURE, and the rules that decide it.

All rules live here, in `LifecycleRules`; changing one means changing `RULES_VERSION`, which is stored with every
decision. A configuration reaches a stage when it passes every check of that stage and of the stages before it:

- DISCOVERY — it passes the in-sample screens: enough trades, a positive return, Sharpe and profit factor above
  their floors and a drawdown a trader could sit through. Failing here leaves it REJECTED (kept, with reasons).
- VALIDATION — it also holds up on data optimisation never saw: the out-of-sample holdout is profitable with
  enough trades, and walk-forward (re-optimised per window) is profitable overall, in most windows and with an
  efficiency showing the in-sample results carry over.
- MATURE — it is also unlikely to be luck: the deflated Sharpe ratio (which accounts for every trial of the
  search) and the permutation test clear their thresholds, neighbouring parameters perform alike, and there are
  enough trades in all to judge. Live tracking will add its own checks here.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

RULES_VERSION = "2026-12-01.1"
STAGES = ("REJECTED", "DISCOVERY", "VALIDATION", "MATURE")


@dataclass(frozen=True)
class LifecycleRules:
    min_in_sample_trades: int = 20
    min_in_sample_sharpe: float = 0.5
    min_in_sample_profit_factor: float = 1.1
    max_in_sample_drawdown_pct: float = 50.0
    min_holdout_trades: int = 5
    min_walk_forward_efficiency: float = 0.3
    min_profitable_window_share: float = 0.5
    min_deflated_sharpe: float = 0.95
    max_permutation_pvalue: float = 0.05
    min_stability: float = 0.5
    min_total_trades: int = 50


@dataclass(frozen=True)
class Check:
    stage: str
    rule: str
    value: float | None
    threshold: float
    passed: bool

    def reason(self) -> str:
        shown = "missing" if self.value is None else f"{self.value:.4g}"
        return f"{self.stage}: {self.rule} is {shown} (needs {self.threshold:g}){'' if self.passed else ' - failed'}"


@dataclass(frozen=True)
class Decision:
    stage: str
    checks: list[Check]
    rules_version: str = RULES_VERSION

    @property
    def reasons(self) -> list[str]:
        """Why it stopped where it did: the failed checks of the first stage it missed (empty when MATURE)."""
        missed = next((s for s in STAGES[1:] if any(not c.passed for c in self.checks if c.stage == s)), None)
        return [c.reason() for c in self.checks if c.stage == missed and not c.passed]

    def checks_json(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.checks]


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def decide(evidence: Mapping[str, Mapping[str, Any]], rules: LifecycleRules | None = None) -> Decision:
    """The stage `evidence` earns. Keys: in_sample, out_of_sample, walk_forward and significance metrics."""
    rules = rules or LifecycleRules()
    ins, oos = evidence.get("in_sample", {}), evidence.get("out_of_sample", {})
    wf, sig = evidence.get("walk_forward", {}), evidence.get("significance", {})
    stitched = wf.get("stitched", {}) or {}
    windows = wf.get("window_count") or 0
    share = (wf.get("profitable_windows") or 0) / windows if windows else None
    total_trades = (_number(ins.get("trades")) or 0) + (_number(oos.get("trades")) or 0)
    ge, le, gt = operator.ge, operator.le, operator.gt
    plan: list[tuple[str, str, object, Callable[[float, float], bool], float]] = [
        ("DISCOVERY", "in-sample trades", ins.get("trades"), ge, rules.min_in_sample_trades),
        ("DISCOVERY", "in-sample return %", ins.get("total_return_pct"), gt, 0.0),
        ("DISCOVERY", "in-sample Sharpe", ins.get("sharpe"), ge, rules.min_in_sample_sharpe),
        ("DISCOVERY", "in-sample profit factor", ins.get("profit_factor"), ge, rules.min_in_sample_profit_factor),
        ("DISCOVERY", "in-sample max drawdown %", ins.get("max_drawdown_pct"), le, rules.max_in_sample_drawdown_pct),
        ("VALIDATION", "holdout trades", oos.get("trades"), ge, rules.min_holdout_trades),
        ("VALIDATION", "holdout return %", oos.get("total_return_pct"), gt, 0.0),
        ("VALIDATION", "walk-forward return %", stitched.get("total_return_pct"), gt, 0.0),
        ("VALIDATION", "walk-forward efficiency", wf.get("efficiency"), ge, rules.min_walk_forward_efficiency),
        ("VALIDATION", "share of profitable walk-forward windows", share, ge, rules.min_profitable_window_share),
        ("MATURE", "deflated Sharpe ratio", sig.get("deflated_sharpe"), ge, rules.min_deflated_sharpe),
        ("MATURE", "permutation p-value", sig.get("permutation_pvalue"), le, rules.max_permutation_pvalue),
        ("MATURE", "parameter stability", sig.get("stability"), ge, rules.min_stability),
        ("MATURE", "total trades", total_trades, ge, rules.min_total_trades),
    ]
    checks = []
    for stage, rule, raw, compare, threshold in plan:
        value = _number(raw)
        checks.append(Check(stage, rule, value, float(threshold), value is not None and compare(value, threshold)))
    stage = "REJECTED"
    for candidate in STAGES[1:]:
        if all(c.passed for c in checks if c.stage == candidate):
            stage = candidate
        else:
            break
    return Decision(stage, checks)
