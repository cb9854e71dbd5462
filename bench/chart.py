"""The PNG chart: latency percentiles at c=1, throughput at each concurrency and streaming times,
the targets side by side, each bar the median with the lowest-highest round as its error bar."""

from __future__ import annotations

from pathlib import Path

from bench.machine import BUSY_CORES
from bench.results import BenchResults
from bench.stats import Spread
from bench.summary import load_spread, stream_spread

COLOURS = {"direct": "#9e9e9e", "modelrouter": "#1f77b4", "litellm": "#ff7f0e"}


def _label(value: float) -> str:
    if not value:
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _bars(
    ax: object, groups: list[str], series: dict[str, list[Spread | None]], ylabel: str, title: str, log: bool = False
) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    width = 0.8 / max(1, len(series))
    for i, (name, spreads) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [s.median if s else 0.0 for s in spreads]
        below = [s.median - s.low if s else 0.0 for s in spreads]
        above = [s.high - s.median if s else 0.0 for s in spreads]
        bars = ax.bar(xs, heights, width, label=name, color=COLOURS.get(name), yerr=[below, above], capsize=3)
        ax.bar_label(bars, labels=[_label(h) for h in heights], fontsize=7, padding=2)
    if log:
        # Direct is two orders of magnitude above the proxies; a linear axis would hide them.
        ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def render_chart(results: BenchResults, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; the machine has no display
    import matplotlib.pyplot as plt

    fig, (latency_ax, throughput_ax, stream_ax) = plt.subplots(1, 3, figsize=(16, 5))
    percentiles = ["p50_ms", "p90_ms", "p99_ms"]
    _bars(
        latency_ax,
        ["p50", "p90", "p99"],
        {
            name: [load_spread(results.latency[name], p) for p in percentiles]
            for name in results.targets
            if results.latency.get(name)
        },
        "ms",
        "Non-streaming latency, concurrency 1",
    )
    levels = sorted(results.throughput)
    _bars(
        throughput_ax,
        [f"c={c}" for c in levels],
        {
            name: [
                load_spread(results.throughput[c][name], "rps") if results.throughput[c].get(name) else None
                for c in levels
            ]
            for name in results.targets
        },
        "requests / s (log scale)",
        "Saturated throughput",
        log=True,
    )
    _bars(
        stream_ax,
        ["TTFT p50", "whole stream p50"],
        {
            name: [stream_spread(results.streaming[name], f) for f in ("ttft_p50_ms", "total_p50_ms")]
            for name in results.targets
            if results.streaming.get(name)
        },
        "ms",
        f"Streaming ({results.settings.get('stream_chunks')} chunks), concurrency 1",
    )
    busy = float(results.machine.get("other_load_cores", 0.0)) > BUSY_CORES
    fig.suptitle(
        f"ModelRouter benchmark {results.started_at} (median, bars = lowest-highest round)"
        + (" - PROVISIONAL: machine busy with other work" if busy else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
