"""Every speed option next to what it costs in accuracy, measured in one run.

For each :data:`SPEED_OPTIONS` entry (pipeline option changes from the defaults) one model is
loaded with those options and

* timed on a 640x480 frame with a controlled segmentation of ``n`` segments (the stage
  timings of :class:`~dsflash_ros.bench.pipeline.StagedFrame`; ``frame_ms`` is preprocess
  through result, what the node waits for), medians over ``repeats``, all options
  interleaved repeat by repeat so that load drift on a shared machine hits them alike;
* with ``workers`` > 1, run as the node runs it on a CPU: that many frames at once, each on
  ``cores / workers`` threads (:mod:`~dsflash_ros.runtime.concurrency`), whole frames
  (:class:`~dsflash_ros.bench.pipeline.StagedFrame` including tracking and, given
  ``message``, message building)
  back to back in every worker for ``tput_seconds``: ``tput_n<N>`` frames per second in all;
* scored on a PSG-format split with ``dsflash eval``'s operating point
  (:data:`~dsflash_ros.limits.EVAL_OPTIONS`): PQ, SGDet mR@50 and PredCls mR@50, and the
  difference of each from the first option (the plain fp32 torch pipeline).

With ``compare_model`` every chosen option runs a second time with that checkpoint (rows
``<option> [<file name>]``), interleaved with the first model's rows: two models compared on
a shared, noisy machine in one run, not in two runs minutes apart.

An option a machine cannot run (onnxruntime missing, bf16 without native support is only
slow, not refused) becomes a row with ``skipped`` and the reason.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsflash_ros.bench.pipeline import STAGES, Message, StagedFrame, test_image
from dsflash_ros.bench.side_by_side import run_side_by_side
from dsflash_ros.limits import EVAL_OPTIONS
from dsflash_ros.runtime.backends import BackendError
from dsflash_ros.runtime.concurrency import resolve_threads
from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions

# what the node waits for per frame: every pipeline stage, not tracking or message building
FRAME_STAGES = tuple(s for s in STAGES if s not in ("tracking", "ros"))


@dataclass(frozen=True)
class SpeedOption:
    name: str
    changes: dict[str, Any] = field(default_factory=dict)  # PipelineOptions fields


SPEED_OPTIONS: tuple[SpeedOption, ...] = (
    SpeedOption("torch fp32 (reference)", {"precision": "fp32"}),
    SpeedOption("defaults (precision auto, pair_topk auto)", {"pair_topk": -1}),
    SpeedOption("torch bf16", {"precision": "bf16"}),
    SpeedOption("onnxruntime fp32", {"backend": "onnxruntime", "precision": "fp32"}),
    SpeedOption("onnxruntime int8", {"backend": "onnxruntime", "precision": "int8"}),
    SpeedOption("prune", {"prune": True, "precision": "fp32"}),
    SpeedOption("prune + bf16", {"prune": True, "precision": "bf16"}),
    SpeedOption("tome 0.5", {"tome_ratio": 0.5, "precision": "fp32"}),
    SpeedOption("tome 0.5 + bf16", {"tome_ratio": 0.5, "precision": "bf16"}),
    # pair proposals (models with a scorer; skipped otherwise), at the default precision
    SpeedOption("pair_topk 8", {"pair_topk": 8}),
    SpeedOption("pair_topk 16", {"pair_topk": 16}),
    SpeedOption("pair_topk 32", {"pair_topk": 32}),
    SpeedOption("pair_topk 16 + prune", {"pair_topk": 16, "prune": True}),
    SpeedOption("defaults + prune", {"pair_topk": -1, "prune": True}),
    # operating points: the defaults at other input sizes (the long side the model runs at)
    SpeedOption("input 480", {"pair_topk": -1, "input_size": 480}),
    SpeedOption("input 640", {"pair_topk": -1, "input_size": 640}),
)


def select_options(words: Sequence[str]) -> tuple[SpeedOption, ...]:
    """The reference row and every option whose name contains one of ``words`` (all
    options when ``words`` is empty)."""
    if not words:
        return SPEED_OPTIONS
    reference, *rest = SPEED_OPTIONS
    chosen = tuple(o for o in rest if any(w in o.name for w in words))
    if not chosen:
        names = ", ".join(o.name for o in rest)
        raise ValueError(f"no speed option matches {', '.join(words)} (options: {names})")
    return (reference, *chosen)


def _load(model_path: str | None, option: SpeedOption, max_objects: int) -> Pipeline:
    # every pair unless the option says otherwise: each row shows its own option alone
    changes = {"pair_topk": 0, **option.changes}
    options = PipelineOptions(max_objects=max_objects, **EVAL_OPTIONS, **changes)
    return Pipeline.load(model_path, options)


def _throughput(
    model_path: str | None,
    option: SpeedOption,
    rgb: np.ndarray,
    n: int,
    max_objects: int,
    workers: int,
    seconds: float,
    warmup: int,
    message: Message | None,
) -> float:
    """Frames per second with ``workers`` frames at once, each on its share of the cores.

    The pipeline is loaded again with those threads (onnxruntime fixes its threads when a
    session is made); torch's thread count is restored afterwards.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(resolve_threads(0, workers))
    try:
        pipe = _load(model_path, option, max_objects)
        frames = [StagedFrame(pipe, rgb, n, 0, message) for _ in range(workers)]

        def warm(worker: int) -> None:
            for _ in range(warmup):
                frames[worker].run()

        done, elapsed = run_side_by_side(
            warm, lambda worker, _: frames[worker].run(), workers, seconds=seconds
        )
        return done / elapsed
    finally:
        torch.set_num_threads(before)


def _accuracy(pipe: Pipeline, dataset: Any, max_images: int | None) -> dict[str, float]:
    from dsflash_ros.evaluate.run import evaluate_dataset

    summary = evaluate_dataset(pipe, dataset, max_images=max_images, progress=False)
    things = {r["bucket"]: r for r in summary["by_size"].get("things", [])}
    return {
        "pq": 100 * summary["pq"]["PQ"],
        "pq_things": 100 * summary["pq"]["things"]["PQ"],
        "sgdet_mR@50": 100 * summary["sgdet"]["mR@50"],
        "predcls_mR@50": 100 * summary["predcls"]["mR@50"],
        # the small things a manipulator cares about: found share of GT things of 256-1024 px
        "found_256_1k": 100 * things.get("256-1024", {}).get("found_share", float("nan")),
    }


def bench_speed_options(
    model_path: str | None,
    data: str | Path | None,
    options: Sequence[SpeedOption] = SPEED_OPTIONS,
    ns: Sequence[int] = (5, 20),
    repeats: int = 5,
    warmup: int = 1,
    max_images: int | None = None,
    split: str = "test",
    workers: int = 1,
    tput_seconds: float = 3.0,
    log: Callable[[str], None] = lambda s: None,
    message: Message | None = None,
    compare_model: str | None = None,
) -> list[dict[str, Any]]:
    """One row per option (and per option with ``compare_model``): ``ms_n<N>`` frame times,
    ``fps_n<N>``, with ``workers`` > 1 ``tput_n<N>`` (frames/s, that many frames at once for
    ``tput_seconds``), accuracy and its deltas from the first row (accuracy only with
    ``data``). ``message``: the ``ros`` stage of
    :class:`~dsflash_ros.bench.pipeline.StagedFrame`."""
    runs = {opt.name: (model_path, opt) for opt in options}
    if compare_model is not None:
        label = Path(compare_model).name
        runs |= {f"{opt.name} [{label}]": (compare_model, opt) for opt in options}
    rgb = test_image((480, 640), 0)
    pipes: dict[str, Pipeline] = {}
    rows: dict[str, dict[str, Any]] = {}
    for name, (path, opt) in runs.items():
        try:
            pipes[name] = _load(path, opt, max(ns))
            rows[name] = {"option": name}
        except (BackendError, ValueError) as e:
            rows[name] = {"option": name, "skipped": str(e)}
    frames = {
        (name, n): StagedFrame(p, rgb, n, 0, message) for name, p in pipes.items() for n in ns
    }
    for frame in frames.values():
        for _ in range(warmup):
            frame.run()
    times: dict[tuple[str, int], list[float]] = {key: [] for key in frames}
    for r in range(repeats):
        log(f"timing repeat {r + 1}/{repeats}")
        for key, frame in frames.items():
            t = frame.run()
            times[key].append(sum(t.get(s, 0.0) for s in FRAME_STAGES))
    for (name, n), values in times.items():
        ms = statistics.median(values)
        rows[name][f"ms_n{n}"] = ms
        rows[name][f"fps_n{n}"] = 1e3 / ms
    if workers > 1:
        for name in pipes:
            log(f"{name}: {workers} frames at once")
            path, opt = runs[name]
            for n in ns:
                rows[name][f"tput_n{n}"] = _throughput(
                    path, opt, rgb, n, max(ns), workers, tput_seconds, warmup, message
                )
    if data is not None:
        from dsflash_ros.data.psg import PSGDataset

        dataset = PSGDataset.from_dir(Path(data), split=split)
        reference: dict[str, float] | None = None
        for name, pipe in pipes.items():
            log(f"scoring {name}")
            acc = _accuracy(pipe, dataset, max_images)
            rows[name].update(acc)
            reference = reference or acc
            for k, v in acc.items():
                rows[name][f"d_{k}"] = v - reference[k]
    return list(rows.values())


def _cell(value: float | None, signed: bool) -> str:
    if value is None or np.isnan(value):
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.1f}"


def format_speed_options(rows: Sequence[dict[str, Any]], ns: Sequence[int] = (5, 20)) -> str:
    """The rows as a fixed-width table (deltas in points against the first row)."""
    cols = [f"ms_n{n}" for n in ns] + [f"fps_n{n}" for n in ns]
    cols += [f"tput_n{n}" for n in ns if any(f"tput_n{n}" in r for r in rows)]
    acc = ["pq", "d_pq", "pq_things", "sgdet_mR@50", "d_sgdet_mR@50"]
    acc += ["predcls_mR@50", "d_predcls_mR@50", "found_256_1k"]
    if any("pq" in r for r in rows):
        cols += acc
    width = max(len(r["option"]) for r in rows) + 2
    lines = ["option".ljust(width) + "".join(c.rjust(16) for c in cols)]
    for r in rows:
        if "skipped" in r:
            lines.append(r["option"].ljust(width) + f"skipped: {r['skipped']}")
            continue
        cells = [_cell(r.get(c), signed=c.startswith("d_")).rjust(16) for c in cols]
        lines.append(r["option"].ljust(width) + "".join(cells))
    return "\n".join(lines)
