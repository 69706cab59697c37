"""Backtest charts: the price with trade markers above the equity curve, as PNG or a self-contained HTML page."""

from __future__ import annotations

import html
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.backtest import BacktestResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

FORMATS = (".png", ".html")


class PlotError(ValueError):
    """A chart that cannot be written (unknown format, unwritable path)."""


def _figure(result: BacktestResult, title: str) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    series = result.series
    times = series.ts.astype("datetime64[ms]")
    fig, (price_ax, equity_ax) = plt.subplots(2, 1, figsize=(12, 7), sharex=True,
                                              gridspec_kw={"height_ratios": [3, 2]})
    price_ax.plot(times, series.close, color="#555555", linewidth=0.7, label=f"{series.symbol} close")
    trades = result.trades
    if trades:
        entry_t = np.array([t.entry_ts for t in trades], dtype="datetime64[ms]")
        exit_t = np.array([t.exit_ts for t in trades], dtype="datetime64[ms]")
        longs = np.array([t.side == "long" for t in trades])
        entries = np.array([t.entry_price for t in trades])
        exits = np.array([t.exit_price for t in trades])
        wins = np.array([t.pnl > 0 for t in trades])
        price_ax.scatter(entry_t[longs], entries[longs], marker="^", color="#1a7f37", s=18, label="long entry")
        price_ax.scatter(entry_t[~longs], entries[~longs], marker="v", color="#8250df", s=18, label="short entry")
        price_ax.scatter(exit_t[wins], exits[wins], marker="o", color="#1f6feb", s=12, label="exit, win")
        price_ax.scatter(exit_t[~wins], exits[~wins], marker="x", color="#cf222e", s=14, label="exit, loss")
    price_ax.set_ylabel("price")
    price_ax.legend(loc="upper left", fontsize=8)
    price_ax.set_title(title)
    equity_ax.plot(times[result.start:], result.equity, color="#0969da", linewidth=1.0)
    equity_ax.axhline(result.initial_cash, color="#999999", linewidth=0.6, linestyle="--")
    equity_ax.set_ylabel("equity")
    fig.tight_layout()
    return fig


def write_plot(result: BacktestResult, path: Path, title: str) -> None:
    """Write the chart; the format follows the file's suffix (.png or .html)."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise PlotError(f"cannot plot to {path.name}: use a .png or .html file")
    fig = _figure(result, title)
    try:
        if suffix == ".png":
            fig.savefig(path, dpi=110)
            return
        svg = io.StringIO()
        fig.savefig(svg, format="svg")
        rows = "".join(
            f"<tr><th>{html.escape(name)}</th><td>{_cell(value)}</td></tr>" for name, value in result.metrics.items()
        )
        path.write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
            "th,td{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{svg.getvalue()}<table>{rows}</table></body></html>",
            encoding="utf-8",
        )
    except OSError as exc:
        raise PlotError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        from matplotlib import pyplot as plt

        plt.close(fig)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}"
    return html.escape(str(value))
