"""End-to-end and per-stage benchmark of the inference pipeline, side by side in one run.

For every preset × backend × precision (unsupported combinations become ``skipped`` rows):

* ``stages``: one frame per segment count ``n`` through the Pipeline's own stage methods,
  with a controlled segmentation (random Voronoi, ``n`` segments) instead of the
  random-weight segmenter's: ``preprocess`` (letterbox), ``backbone``, ``postprocess``
  (panoptic merge of the real logits), ``mask_embedding`` (Alg. 2 step 1: the ``n`` masks
  pooled to cell ratios + boxes; the per-pair gather/mix is inside the head graph),
  ``relation_head`` (all ``n(n-1)/2`` passes + spreading to ordered pairs), ``result``
  (id image + thresholding into a SceneGraphResult) and ``ros`` (SceneGraph message build +
  serialisation: the ``message`` callable the caller passes in, as ``dsflash bench`` does
  where rclpy and the messages import; no ROS import here). Medians over ``repeats``.
  ``overhead_pct`` = (result + ros) / model time (backbone + postprocess + mask embedding +
  relation head): what the node adds on top of the model.
* ``pipeline``: ``Pipeline.__call__`` end to end (permissive thresholds, ``max_objects`` =
  max ``n``) -> FPS; peak memory (CUDA: ``max_memory_allocated``; CPU: peak-RSS growth).
* ``rps``: relation-head throughput at fixed pairs per forward -> directed relations/s
  (a bidirectional pass yields two).
* ``baseline``: per-pair Alg. 1 (DSFormer-style: the ``n(n-1)`` ordered pairs each pool
  their two full-resolution masks and run one head forward of their own) vs the shipped
  relation stage, at ``n = baseline_n``, and the whole frame with either. Both are the one
  relation stage (:func:`dsflash_ros.runtime.relations.relation_logits`) with other
  arguments.
* ``head``: the head-level comparisons of :mod:`dsflash_ros.bench.relation_head`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dsflash_ros.bench.relation_head import bench_relation_head, random_segmentation
from dsflash_ros.model.config import load_preset
from dsflash_ros.model.dsflash import DSFlash
from dsflash_ros.model.pairs import unordered_pairs
from dsflash_ros.model.panoptic import PanopticSegments, masks_to_boxes
from dsflash_ros.model.relation_head import HeadOptions
from dsflash_ros.runtime.backends import BackendError
from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions
from dsflash_ros.runtime.relations import head_on_tokens, relation_logits
from dsflash_ros.tracking.scene import SceneGraphTracker, TrackingConfig

STAGES = (
    "preprocess",
    "backbone",
    "postprocess",
    "mask_embedding",
    "relation_head",
    "result",
    "tracking",
    "ros",
)
MODEL_STAGES = ("backbone", "postprocess", "mask_embedding", "relation_head")
OPEN_THRESHOLDS = {"score_threshold": 0.0, "overlap_threshold": 0.0, "relation_threshold": 0.0}
# the ``ros`` stage: a SceneGraphResult built into its SceneGraph message and serialised
Message = Callable[[Any], Any]


@dataclass
class BenchConfig:
    presets: Sequence[str] = ("tiny",)
    backends: Sequence[str] = ("torch", "onnxruntime")
    precisions: Sequence[str] = ("auto",)
    device: str = "cpu"
    image_size: int | None = None  # None: the preset's own (640 for S/B/L)
    ns: Sequence[int] = (5, 10, 20, 40)
    batch_sizes: Sequence[int] = (16, 64, 256)
    repeats: int = 3
    warmup: int = 1
    baseline_n: int = 20  # 0: skip the Alg. 1 baseline
    head_comparisons: bool = True
    image_hw: tuple[int, int] = (480, 640)
    seed: int = 0
    model_path: str | None = None  # a checkpoint instead of random preset weights

    def validate(self) -> None:
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("repeats must be >= 1 and warmup >= 0")
        if not self.presets or not self.backends or not self.precisions:
            raise ValueError("need at least one preset, backend and precision")
        if any(n < 2 for n in self.ns) or any(b < 1 for b in self.batch_sizes):
            raise ValueError("segment counts must be >= 2 and batch sizes >= 1")
        if self.baseline_n == 1 or self.baseline_n < 0:
            raise ValueError("baseline_n must be 0 (off) or >= 2")


# ----------------------------------------------------------------------------- helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], Any], cfg: BenchConfig, device: torch.device) -> float:
    for _ in range(cfg.warmup):
        fn()
    times = []
    for _ in range(cfg.repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class PeakMemory:
    """Peak memory of a block: CUDA ``max_memory_allocated``; on CPU the growth of the peak
    RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` where Linux allows it)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb = float("nan")
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "rss_peak_delta"

    @staticmethod
    def _hwm_kb() -> int:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    @staticmethod
    def _rss_kb() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
        except OSError:
            return PeakMemory._hwm_kb()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            try:  # "5" resets the peak RSS to the current RSS
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass
            self._base = self._rss_kb()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.mb = max(0, self._hwm_kb() - self._base) / 1024


def test_image(hw: tuple[int, int], seed: int) -> np.ndarray:
    """A deterministic RGB frame with some structure (blocks over noise)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    img = (rng.random((h, w, 3)) * 80).astype(np.uint8)
    for _ in range(12):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        img[y : y + h // 4, x : x + w // 4] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img


# ----------------------------------------------------------------------------- one frame


class StagedFrame:
    """The Pipeline's stages with a controlled ``n``-segment segmentation; ``message`` (a
    SceneGraphResult -> its serialised SceneGraph) is timed as the ``ros`` stage."""

    def __init__(
        self, pipe: Pipeline, rgb: np.ndarray, n: int, seed: int, message: Message | None = None
    ) -> None:
        self.pipe, self.rgb, self.n = pipe, rgb, n
        model, dev = pipe.model, pipe.device
        gen = torch.Generator().manual_seed(seed + n)
        self.masks = random_segmentation(n, model.image_size, gen, dev)
        self.labels = torch.randint(0, model.config.backbone.num_labels, (n,), generator=gen)
        self.labels = self.labels.to(dev)
        self.scores = torch.rand(n, generator=gen).to(dev)
        self.convert = message
        # the node's default tracking (TrackingConfig's defaults are the node's parameters'):
        # track ids, smoothed relations and events on every frame (its state carries over
        # between repeats, as from one camera frame to the next)
        self.tracker = SceneGraphTracker(TrackingConfig().with_pipeline(pipe.options))

    def run(self) -> dict[str, float]:
        """One frame through the Pipeline's own stage methods, timed stage by stage."""
        pipe, o = self.pipe, self.pipe.options
        t: dict[str, float] = {}
        last = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal last
            _sync(pipe.device)
            now = time.perf_counter()
            t[name] = (now - last) * 1e3
            last = now

        pixels, info = pipe.preprocess(self.rgb)
        lap("preprocess")
        _, features = pipe.segments(pixels, info, t, o)  # laps backbone + postprocess itself
        last = time.perf_counter()
        segments = PanopticSegments(self.masks, self.labels, self.scores)
        rel = pipe.relations(
            features,
            segments.masks,
            options=o,
            labels=segments.labels,
            # the masks pooled to cell ratios + boxes, pairs chosen
            before_head=lambda: lap("mask_embedding"),
        )
        if "mask_embedding" not in t:  # fewer than 2 segments: the head never ran
            lap("mask_embedding")
        lap("relation_head")  # the head passes + spreading both directions to ordered pairs
        result = pipe.result(segments, rel, info, o)
        result.timings_ms = dict(t)
        lap("result")
        self.tracker.update(result)
        lap("tracking")
        if self.convert is not None:
            self.convert(result)
            lap("ros")
        return t


def _median_stages(frame: StagedFrame, cfg: BenchConfig) -> dict[str, float]:
    for _ in range(cfg.warmup):
        frame.run()
    runs = [frame.run() for _ in range(cfg.repeats)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def alg1_relation_ms(pipe: Pipeline, frame: StagedFrame, cfg: BenchConfig) -> float:
    """Per-pair Alg. 1 baseline of the relation stage (torch, unidirectional, per-pair mask
    pooling, one pair per forward), on the backbone features of the frame."""
    model, dev = pipe.model, pipe.device
    head = model.head.to(dev)
    pixels, _ = pipe.preprocess(frame.rgb)
    with torch.inference_mode():
        tokens = head.encode_image(model.backbone.to(dev)(pixels[None]).features)
        one_pair = head_on_tokens(head, tokens, HeadOptions(max_pairs_per_chunk=1))

        def baseline() -> None:
            relation_logits(
                one_pair, head, frame.masks, bidirectional=False, mask_embedding="per_pair"
            )

        return _median_ms(baseline, cfg, dev)


# ----------------------------------------------------------------------------- driver


def _config_model(preset: str, cfg: BenchConfig) -> DSFlash:
    if cfg.model_path:  # `preset` only names it in the rows
        from dsflash_ros.model.dsflash import load_model

        return load_model(cfg.model_path)[0].eval()
    mc = load_preset(preset)
    if cfg.image_size:
        mc.backbone.image_size = cfg.image_size
    torch.manual_seed(cfg.seed)
    return DSFlash(mc).eval()


def _make_pipeline(
    model: DSFlash, preset: str, backend: str, precision: str, cfg: BenchConfig
) -> Pipeline:
    opts = PipelineOptions(
        backend=backend,
        device=cfg.device,
        precision=precision,
        max_objects=max(cfg.ns),
        pair_topk=0,  # the full relation stage at every n (--speed-options compares pair_topk)
        **OPEN_THRESHOLDS,
    )
    return Pipeline(model, f"{preset}-random-seed{cfg.seed}", opts)


def _rps_rows(pipe: Pipeline, base: dict[str, Any], cfg: BenchConfig) -> list[dict[str, Any]]:
    model, dev = pipe.model, pipe.device
    n = max(cfg.ns)
    gen = torch.Generator().manual_seed(cfg.seed)
    masks = random_segmentation(n, model.image_size, gen, dev)
    ratios, boxes = model.head.mask_ratios(masks), masks_to_boxes(masks)
    feats = pipe.backend.run_backbone(
        torch.rand(1, 3, model.image_size, model.image_size, generator=gen).to(dev)
    ).features
    every = unordered_pairs(n, dev)
    per_pass = 2 if model.head.bidirectional else 1
    rows = []
    for b in cfg.batch_sizes:
        pairs = every[torch.arange(b, device=dev) % len(every)]
        ms = _median_ms(lambda p=pairs: pipe.backend.run_head(feats, ratios, boxes, p), cfg, dev)
        rows.append({**base, "pairs_per_forward": b, "ms": ms, "rps": per_pass * b / (ms / 1e3)})
    return rows


def run_bench(
    cfg: BenchConfig, log: Callable[[str], None] = lambda s: None, message: Message | None = None
) -> dict[str, Any]:
    """Run every section for every configuration; returns JSON-able dict of row lists.
    ``message``: the ``ros`` stage (see the module docstring); None leaves it out."""
    cfg.validate()
    device = torch.device(cfg.device)
    out: dict[str, Any] = {
        "meta": _meta(cfg, message is not None),
        "stages": [],
        "pipeline": [],
        "rps": [],
        "baseline": [],
        "head": [],
        "skipped": [],
    }
    rgb = test_image(cfg.image_hw, cfg.seed)
    for preset in cfg.presets:
        model = _config_model(preset, cfg)
        stage_frames: dict[int, StagedFrame] = {}
        for backend in cfg.backends:
            for precision in cfg.precisions:
                base = {
                    "preset": preset,
                    "image_size": model.image_size,
                    "backend": backend,
                    "precision": precision,
                }
                log(f"{preset} {backend} {precision}")
                try:
                    pipe = _make_pipeline(model, preset, backend, precision, cfg)
                except (BackendError, ValueError) as e:
                    out["skipped"].append({**base, "reason": str(e)})
                    continue
                if precision == "auto":  # say what auto chose on this machine
                    base["precision"] = f"auto ({pipe.precision.precision})"
                with torch.inference_mode(), PeakMemory(pipe.device) as mem:
                    for n in cfg.ns:
                        frame = StagedFrame(pipe, rgb, n, cfg.seed, message)
                        stage_frames.setdefault(n, frame)
                        t = _median_stages(frame, cfg)
                        out["stages"].append(_stage_row(base, n, t))
                    e2e = [pipe(rgb) for _ in range(cfg.warmup + cfg.repeats)][cfg.warmup :]
                    total = statistics.median(r.timings_ms["total"] for r in e2e)
                    out["rps"] += _rps_rows(pipe, base, cfg)
                out["pipeline"].append(
                    {
                        **base,
                        "objects": e2e[-1].num_objects,
                        "relations": e2e[-1].num_relations,
                        "total_ms": total,
                        "fps": 1e3 / total,
                        "peak_mem_mb": mem.mb,
                        "mem_kind": mem.kind,
                    }
                )
        if cfg.baseline_n and out["stages"]:
            out["baseline"] += _baseline_rows(model, preset, cfg, rgb, out["stages"])
        if cfg.head_comparisons:
            log(f"{preset} head comparisons")
            mc = model.config
            rows = bench_relation_head(
                mc.head, mc.backbone, cfg.ns, cfg.repeats, cfg.warmup, device, seed=cfg.seed
            )
            out["head"] += [{"preset": preset, **r} for r in rows]
    out["summary"] = summarize(out)
    return out


def _stage_row(base: dict[str, Any], n: int, t: dict[str, float]) -> dict[str, Any]:
    model_ms = sum(t[k] for k in MODEL_STAGES)
    node_ms = t["result"] + t.get("tracking", 0.0) + t.get("ros", 0.0)
    total = sum(t.values())
    return {
        **base,
        "n": n,
        "pairs": n * (n - 1) // 2,
        **{f"{k}_ms": v for k, v in t.items()},
        "model_ms": model_ms,
        "total_ms": total,
        "fps": 1e3 / total,
        "overhead_pct": 100.0 * node_ms / model_ms,
        # what tracking adds to the frame time without it (the node's `tracking` parameter)
        "tracking_pct": 100.0 * t.get("tracking", 0.0) / (total - t.get("tracking", 0.0)),
    }


def _baseline_rows(
    model: DSFlash, preset: str, cfg: BenchConfig, rgb: np.ndarray, stages: list[dict]
) -> list[dict[str, Any]]:
    n = cfg.baseline_n
    pipe = _make_pipeline(model, preset, "torch", "fp32", cfg)
    frame = StagedFrame(pipe, rgb, n, cfg.seed)
    with torch.inference_mode():
        shipped = _median_stages(frame, cfg)
        base_ms = alg1_relation_ms(pipe, frame, cfg)
    shipped_rel = shipped["mask_embedding"] + shipped["relation_head"]
    other = sum(v for k, v in shipped.items() if k not in ("mask_embedding", "relation_head"))
    return [
        {
            "preset": preset,
            "backend": "torch",
            "precision": "fp32",
            "n": n,
            "ordered_pairs": n * (n - 1),
            "alg1_relation_ms": base_ms,
            "shipped_relation_ms": shipped_rel,
            "relation_speedup": base_ms / shipped_rel,
            "alg1_frame_ms": other + base_ms,
            "shipped_frame_ms": other + shipped_rel,
            "frame_speedup": (other + base_ms) / (other + shipped_rel),
        }
    ]


def summarize(out: dict[str, Any]) -> dict[str, Any]:
    """The headline ratios: Alg. 1 baseline speed-up, onnxruntime vs torch, node overhead."""
    s: dict[str, Any] = {}
    for r in out["baseline"]:
        tag = f"{r['preset']} n={r['n']}: per-pair Alg.1 / shipped"
        s[f"{tag}, relation stage"] = r["relation_speedup"]
        s[f"{tag}, whole frame"] = r["frame_speedup"]
    by = {(r["preset"], r["backend"], r["precision"], r["n"]): r for r in out["stages"]}
    for (preset, backend, precision, n), r in by.items():
        ref = by.get((preset, "torch", precision, n))
        if backend == "onnxruntime" and ref:
            s[f"{preset} {precision} n={n}: torch/onnxruntime frame time"] = (
                ref["total_ms"] / r["total_ms"]
            )
            s[f"{preset} {precision} n={n}: torch/onnxruntime backbone"] = (
                ref["backbone_ms"] / r["backbone_ms"]
            )
            s[f"{preset} {precision} n={n}: torch/onnxruntime relation head"] = (
                ref["relation_head_ms"] / r["relation_head_ms"]
            )
    for r in out["stages"]:
        key = f"{r['preset']} {r['backend']} {r['precision']}: max node overhead, % of model"
        s[key] = max(s.get(key, 0.0), r["overhead_pct"])
    return s


def _meta(cfg: BenchConfig, ros_conversion: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "config": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()
        },
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "ros_conversion": ros_conversion,
    }
    if cfg.device.startswith("cuda") and torch.cuda.is_available():
        meta["gpu"] = torch.cuda.get_device_name(torch.device(cfg.device))
    try:
        import onnxruntime

        meta["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return meta


# ----------------------------------------------------------------------------- output

_TABLES = {
    "stages": (
        "preset",
        "backend",
        "precision",
        "n",
        "pairs",
        "preprocess_ms",
        "backbone_ms",
        "postprocess_ms",
        "mask_embedding_ms",
        "relation_head_ms",
        "result_ms",
        "tracking_ms",
        "ros_ms",
        "total_ms",
        "fps",
        "overhead_pct",
        "tracking_pct",
    ),
    "pipeline": (
        "preset",
        "backend",
        "precision",
        "objects",
        "relations",
        "total_ms",
        "fps",
        "peak_mem_mb",
    ),
    "rps": ("preset", "backend", "precision", "pairs_per_forward", "ms", "rps"),
    "baseline": (
        "preset",
        "n",
        "ordered_pairs",
        "alg1_relation_ms",
        "shipped_relation_ms",
        "relation_speedup",
        "alg1_frame_ms",
        "shipped_frame_ms",
        "frame_speedup",
    ),
    "head": (
        "preset",
        "n",
        "pairs",
        "comparison",
        "baseline",
        "variant",
        "baseline_ms",
        "variant_ms",
        "speedup",
    ),
    "skipped": ("preset", "backend", "precision", "reason"),
}


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.2f}"
    return "-" if v is None else str(v)


def format_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain fixed-width table (columns missing from a row print as ``-``)."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    heads = [c.removesuffix("_ms") + (" ms" if c.endswith("_ms") else "") for c in columns]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(heads)]
    lines = [f"== {title} ==", "  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def format_report(out: dict[str, Any]) -> str:
    parts = [format_table(name, out[name], cols) for name, cols in _TABLES.items() if out[name]]
    if out.get("summary"):
        width = max(len(k) for k in out["summary"])
        parts.append("== summary (time ratios A/B > 1: A is slower) ==")
        parts[-1] += "\n" + "\n".join(
            f"{k.ljust(width)}  {v:8.2f}" for k, v in out["summary"].items()
        )
    return "\n\n".join(parts)
