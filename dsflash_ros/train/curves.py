"""What a training run tells a person: one summary line per epoch, a final summary, and
``training_curves.png`` (loss components, learning rate and validation metrics against the
step) drawn from the rows of ``metrics.csv``.

The picture is drawn with matplotlib's Agg canvas directly (no pyplot: no global state, no
display needed).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dsflash_ros.progress import format_duration

CURVES_NAME = "training_curves.png"
_NOT_LOSSES = ("grad_norm", "pairs")  # logged per step, shown apart from the losses
_VAL_SCALE_FREE = ("segments_per_image",)  # validation values that are not fractions


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _short(name: str) -> str:
    return name[5:] if name.startswith("loss_") else name


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def loss_text(losses: Mapping[str, float]) -> str:
    """``loss 1.23 (ce 0.5, dice 0.3, ...)`` then the other logged values."""
    parts = []
    if "loss" in losses:
        terms = [
            f"{_short(k)} {_fmt(v)}"
            for k, v in losses.items()
            if k.startswith("loss_") and k != "loss"
        ]
        parts.append(f"loss {_fmt(losses['loss'])}" + (f" ({', '.join(terms)})" if terms else ""))
    parts += [f"{k} {_fmt(v)}" for k, v in losses.items() if k in _NOT_LOSSES]
    return " | ".join(parts)


def val_text(values: Mapping[str, float]) -> str:
    """``val PQ 41.2% SQ ... mR@50 12.0%`` (fractions as percent)."""
    if not values:
        return ""
    items = []
    for k, v in values.items():
        name = k[4:] if k.startswith("val_") else k
        shown = _fmt(v) if name in _VAL_SCALE_FREE else f"{100 * v:.1f}%"
        items.append(f"{name} {shown}")
    return "val " + " ".join(items)


LINE_WIDTH = 120  # training's summary lines wrap here (continuation lines indented)


def _speed(steps_per_s: float) -> str:
    """Always seconds per step, the unit of training's progress lines too."""
    return f"{1 / steps_per_s:.2f} s/step" if steps_per_s > 0 else "- s/step"


def wrap_fields(desc: str, parts: Sequence[str]) -> str:
    """``parts`` joined by `` | ``, a new line (indented under ``[desc]``) where the next part
    would pass :data:`LINE_WIDTH`; a part longer than a line is wrapped at its spaces."""
    indent = " " * (len(desc) + 3)
    lines: list[str] = []
    for part in (p for p in parts if p):
        if lines and len(lines[-1]) + 3 + len(part) <= LINE_WIDTH:
            lines[-1] += " | " + part
            continue
        if lines:
            lines[-1] += " |"
        first = indent if lines else ""
        lines += textwrap.wrap(
            part,
            LINE_WIDTH,
            initial_indent=first,
            subsequent_indent=indent,
            break_on_hyphens=False,
            break_long_words=False,
        )
    return "\n".join(lines)


def epoch_line(
    desc: str,
    epoch: int,
    epochs: int,
    losses: Mapping[str, float],
    lr: float,
    steps: int,
    seconds: float,
    val: Mapping[str, float] | None = None,
    eval_seconds: float = 0.0,
    eta_seconds: float | None = None,
) -> str:
    """The summary of a finished epoch (``epoch`` counts from 1), wrapped at
    :data:`LINE_WIDTH`; ``eta_seconds``: time left for the rest of the stage."""
    rate = steps / seconds if seconds > 0 else 0.0
    parts = [
        f"[{desc}] epoch {epoch}/{epochs}",
        loss_text(losses),
        f"lr {lr:.2e}",
        f"{_speed(rate)} ({format_duration(seconds)})",
    ]
    if val:
        parts.append(
            val_text(val) + (f" ({format_duration(eval_seconds)})" if eval_seconds else "")
        )
    if eta_seconds is not None and epoch < epochs:
        parts.append(f"stage ETA {format_duration(eta_seconds)}")
    return wrap_fields(desc, parts)


def final_line(
    desc: str,
    epochs_done: int,
    epochs: int,
    steps: int,
    seconds: float,
    losses: Mapping[str, float],
    val: Mapping[str, float],
    curves: Path | None,
) -> str:
    head = (
        f"[{desc}] finished: {epochs_done} epochs, {steps} steps"
        if epochs_done >= epochs
        else f"[{desc}] stopped after epoch {epochs_done}/{epochs} ({steps} steps; "
        "continue with --resume)"
    )
    parts = [head + f" in {format_duration(seconds)}"]
    if losses:
        parts.append("last epoch " + loss_text(losses))
    if val:
        parts.append("final " + val_text(val))
    if curves is not None:
        parts.append(f"curves {curves}")
    return wrap_fields(desc, parts)


# --------------------------------------------------------------------------- picture


def _series(rows: Sequence[Mapping[str, Any]], kind: str, key: str) -> tuple[list, list]:
    xs, ys = [], []
    for r in rows:
        if r.get("kind") != kind:
            continue
        x, y = _num(r.get("step")), _num(r.get(key))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def _keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        for k in r:
            seen.setdefault(k, None)
    return list(seen)


def plot_training_curves(
    rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = ""
) -> Path | None:
    """Draw the metrics rows (``kind`` train / epoch) into ``path``; ``None`` if no rows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not any(r.get("kind") in ("train", "epoch") for r in rows):
        return None
    keys = _keys(rows)
    losses = [k for k in keys if k == "loss" or k.startswith("loss_")]
    vals = [k for k in keys if k.startswith("val_")]
    fig = Figure(figsize=(15, 4.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_val, ax_lr = fig.subplots(1, 3, width_ratios=(1.3, 1.1, 0.8), sharex=True)

    colors = {}
    for i, k in enumerate(losses):
        colors[k] = "black" if k == "loss" else f"C{i % 10}"
        xs, ys = _series(rows, "train", k)
        if xs:
            ax_loss.plot(xs, ys, color=colors[k], lw=1.8 if k == "loss" else 1.0, alpha=0.55)
        ex, ey = _series(rows, "epoch", f"epoch_{k}")
        if ex:
            ax_loss.plot(ex, ey, "o-", color=colors[k], ms=4, lw=1.4, label=_short(k))
        elif xs:
            ax_loss.plot([], [], color=colors[k], label=_short(k))
    ax_loss.set_title("training loss (lines: logged steps, dots: epoch mean)")
    ax_loss.set_xlabel("step")
    positive = [y for k in losses for y in _series(rows, "train", k)[1] if y > 0]
    if positive and max(positive) / min(positive) > 30:
        ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    if losses:
        ax_loss.legend(fontsize=8, ncols=2)

    drawn = 0
    for i, k in enumerate(vals):
        name = k[4:]
        if name in _VAL_SCALE_FREE:
            continue
        xs, ys = _series(rows, "epoch", k)
        if xs:
            ax_val.plot(xs, [100 * y for y in ys], "o-", ms=4, color=f"C{i % 10}", label=name)
            drawn += 1
    ax_val.set_title("validation (%)")
    ax_val.set_xlabel("step")
    ax_val.grid(alpha=0.3)
    if drawn:
        ax_val.legend(fontsize=8, ncols=2)
    else:
        ax_val.text(0.5, 0.5, "no validation yet", ha="center", va="center",
                    transform=ax_val.transAxes, color="0.4")  # fmt: skip

    xs, ys = _series(rows, "train", "lr")
    ax_lr.plot(xs, ys, color="C0", label="lr")
    ax_lr.set_title("learning rate / grad norm")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("lr", color="C0")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax_lr.grid(alpha=0.3)
    gx, gy = _series(rows, "train", "grad_norm")
    if gx:
        ax_gn = ax_lr.twinx()
        ax_gn.plot(gx, gy, color="C3", lw=0.8, alpha=0.7)
        ax_gn.set_ylabel("grad norm (before clipping)", color="C3")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, format="png", facecolor="white")
    tmp.replace(path)
    return path
