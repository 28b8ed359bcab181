"""Pictures of ``dsflash bench`` results (matplotlib's Agg canvas, no display needed).

:func:`plot_bench`: left, the per-stage time of one frame as stacked bars, one bar per
segment count N and backend/precision; right, relations per second of the relation head
against the pairs per forward pass. :func:`plot_training_bench`: steps/s per variant of
``dsflash bench --training``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

STAGE_COLOURS = {
    "preprocess": "#9e9e9e",
    "backbone": "#1f77b4",
    "postprocess": "#ff7f0e",
    "mask_embedding": "#2ca02c",
    "relation_head": "#d62728",
    "result": "#9467bd",
    "ros": "#8c564b",
}


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", facecolor="white")
    return path


def _config_name(row: Mapping[str, Any], presets: int) -> str:
    name = f"{row['backend']} {row['precision']}"
    return f"{row['preset']} {name}" if presets > 1 else name


def plot_bench(out: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Draw the ``stages`` and ``rps`` rows of :func:`dsflash_ros.bench.pipeline.run_bench`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stages: Sequence[Mapping[str, Any]] = out.get("stages", [])
    rps: Sequence[Mapping[str, Any]] = out.get("rps", [])
    presets = len({r["preset"] for r in stages} | {r["preset"] for r in rps})
    fig = Figure(figsize=(14, 5.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_st, ax_rps = fig.subplots(1, 2, width_ratios=(1.6, 1.0))

    configs = list(dict.fromkeys(_config_name(r, presets) for r in stages))
    ns = sorted({int(r["n"]) for r in stages})
    width = 0.8 / max(len(configs), 1)
    stage_names = [s for s in STAGE_COLOURS if any(f"{s}_ms" in r for r in stages)]
    ticks: list[tuple[float, str]] = []
    for c, config in enumerate(configs):
        rows = {int(r["n"]): r for r in stages if _config_name(r, presets) == config}
        present = [n for n in ns if n in rows]
        xs = [ns.index(n) + (c - (len(configs) - 1) / 2) * width for n in present]
        bottom = [0.0] * len(xs)
        for stage in stage_names:
            heights = [float(rows[n].get(f"{stage}_ms", 0.0)) for n in present]
            ax_st.bar(
                xs, heights, width * 0.92, bottom=bottom, color=STAGE_COLOURS[stage],
                label=stage if c == 0 else None, edgecolor="white", linewidth=0.5,
            )  # fmt: skip
            bottom = [b + h for b, h in zip(bottom, heights)]
        for x, n, total in zip(xs, present, bottom):
            ax_st.text(x, total, f"{total:.0f}", ha="center", va="bottom", fontsize=7)
            ticks.append((x, f"{config}\nN = {n} ({n * (n - 1) // 2} pairs)"))
    ticks.sort()
    ax_st.set_xticks([t[0] for t in ticks], [t[1] for t in ticks], fontsize=7)
    ax_st.set_ylabel("ms per frame (median)")
    ax_st.set_title("time per frame by stage (N segments per frame)")
    ax_st.grid(axis="y", alpha=0.3)
    if stage_names:
        ax_st.legend(fontsize=8, ncols=2, loc="upper left")
    else:
        ax_st.text(0.5, 0.5, "no stage rows", ha="center", transform=ax_st.transAxes)

    for c, config in enumerate(dict.fromkeys(_config_name(r, presets) for r in rps)):
        rows = sorted(
            (r for r in rps if _config_name(r, presets) == config),
            key=lambda r: r["pairs_per_forward"],
        )
        ax_rps.plot([r["pairs_per_forward"] for r in rows], [r["rps"] for r in rows], "o-",
                    color=f"C{c}", label=config)  # fmt: skip
    ax_rps.set_xscale("log", base=2)
    sizes = sorted({int(r["pairs_per_forward"]) for r in rps})
    ax_rps.set_xticks(sizes, [str(b) for b in sizes])
    ax_rps.set_ylim(bottom=0)
    ax_rps.set_xlabel("pairs per head forward")
    ax_rps.set_ylabel("relations / s")
    ax_rps.set_title("relation head throughput")
    ax_rps.grid(alpha=0.3)
    if rps:
        ax_rps.legend(fontsize=8)
    else:
        ax_rps.text(0.5, 0.5, "no throughput rows", ha="center", transform=ax_rps.transAxes)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_training_bench(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = ""):
    """Steps/s per variant of the training benchmark, with the speed-up over the first."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 0.9 + 0.5 * max(len(rows), 1)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names = [str(r["variant"]) for r in rows][::-1]
    values = [float(r["steps_per_s"]) for r in rows][::-1]
    ax.barh(names, values, color="C0")
    for y, r in enumerate(rows[::-1]):
        ax.text(float(r["steps_per_s"]), y, f" {r['steps_per_s']:.2f} ({r.get('speedup', 1):.2f}x)",
                va="center", fontsize=8)  # fmt: skip
    ax.set_xlabel("training steps / s")
    ax.set_title(title or "stage-1 training speed")
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlim(0, max(values, default=1) * 1.3)
    return _save(fig, path)
