"""PNG charts of benchmark results (matplotlib, headless). Optional: skipped when it is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["gateway_chart", "model_chart"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # no display: render to files only
    import matplotlib.pyplot as plt

    return plt


def gateway_chart(result: dict[str, Any], out: Path) -> Path | None:
    """Requests/s and TTFB p50 per concurrency level, direct vs. through the network."""
    plt = _pyplot()
    if plt is None:
        return None
    rows = result["rows"]
    levels = [str(r["concurrency"]) for r in rows]
    xs = range(len(levels))
    width = 0.38
    fig, (ax_rps, ax_ttfb) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in (
        (ax_rps, "rps", "requests/s"),
        (ax_ttfb, "ttfb_p50_ms", "time to first byte p50 (ms)"),
    ):
        ax.bar([x - width / 2 for x in xs], [r["direct"][key] for r in rows], width, label="direct")
        ax.bar(
            [x + width / 2 for x in xs], [r["network"][key] for r in rows], width, label="through the network"
        )
        ax.set_xticks(list(xs), levels)
        ax.set_xlabel("concurrency")
        ax.set_title(title)
        ax.legend()
    fig.suptitle("app → client → proxy → worker → upstream vs. app → upstream (50 × 128 B stream)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def model_chart(result: dict[str, Any], out: Path) -> Path | None:
    """Time to first token and tokens/s of the embedded model, direct vs. through the network."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, (ax_ttft, ax_tps) = plt.subplots(1, 2, figsize=(9, 3.5))
    paths = [p for p in ("direct", "network", "network_separate") if p in result]
    labels = [
        {"network": "network\n(one process)", "network_separate": "network\n(process each)"}.get(p, p)
        for p in paths
    ]
    colors = ["tab:blue", "tab:orange", "tab:green"][: len(paths)]
    ax_ttft.bar(labels, [result[p]["ttft_ms"] for p in paths], color=colors)
    ax_ttft.set_title("time to first token (ms)")
    ax_tps.bar(labels, [result[p]["tokens_per_s"] for p in paths], color=colors)
    ax_tps.set_title("decode tokens/s")
    fig.suptitle("embedded SmolLM2-135M: engine alone vs. through the network")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
