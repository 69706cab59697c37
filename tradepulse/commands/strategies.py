"""`tradepulse strategies`: the registered strategies with their parameters and search spaces."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)


def strategies() -> None:
    """List every strategy, its parameters (default, valid range) and the space optimisation searches."""
    from agents.strategies import STRATEGIES
    from agents.strategies.base import ChoiceParam

    for name, cls in sorted(STRATEGIES.items()):
        table = Table(title=f"{name}: {cls.description}", title_justify="left")
        for column in ("parameter", "default", "valid", "searched", "meaning"):
            table.add_column(column)
        for param, spec in cls.parameters.items():
            if isinstance(spec, ChoiceParam):
                valid = searched = ", ".join(spec.choices)
            else:
                valid = f"{spec.low} .. {spec.high}"
                searched = " .. ".join(str(v) for v in spec.space[:2]) + (
                    f" step {spec.space[2]}" if len(spec.space) > 2 else (f" step {spec.step}" if spec.step else "")
                )
            table.add_row(param, str(spec.default), valid, searched, spec.help)
        console.print(table)
