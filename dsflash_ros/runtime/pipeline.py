"""Pipeline: RGB image in, scene graph out. The one inference entry point of the project.

Stages (each timed): preprocess (letterbox on the device) -> backbone (one EoMT pass: panoptic
queries + the 4 feature blocks) -> postprocess (non-overlapping segments) -> relation
(mask ratios once, all pairs batched through the head; bidirectional: N(N-1)/2 passes) ->
result (id image, object statistics, ranked relations: :mod:`.frame_result`).
Everything stays on the backend's device until the final uint16 id image and the small
per-object arrays are copied to the host.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dsflash_ros.limits import OPTION, OPTIONS, RANGES, check_range
from dsflash_ros.model.checkpoint import CheckpointError
from dsflash_ros.model.config import ModelConfig
from dsflash_ros.model.dsflash import DSFlash, build_model, load_model, resize_input
from dsflash_ros.model.files import default_model_path
from dsflash_ros.model.panoptic import (
    PanopticSegments,
    PanopticThresholds,
    postprocess_panoptic,
    segments_to_id_map,
)
from dsflash_ros.model.preprocess import LetterboxInfo, letterbox, letterbox_masks
from dsflash_ros.model.provenance import ModelFacts, ProvenanceError
from dsflash_ros.model.relation_head import HeadOptions
from dsflash_ros.runtime import allocator
from dsflash_ros.runtime.backends import BACKENDS, Backend, create_backend
from dsflash_ros.runtime.backends.torch_backend import cpu_has_native_bf16
from dsflash_ros.runtime.frame_result import build_result
from dsflash_ros.runtime.precision import PrecisionChoice, resolve_precision
from dsflash_ros.runtime.relations import (
    MASK_EMBEDDINGS,
    NO_PROPOSAL_SCORER,
    RelationLogits,
    relation_logits,
)
from dsflash_ros.runtime.result import SceneGraphResult

# pair_topk -1 (auto) with a model that has a pair-proposal scorer: on the held-out split
# K = 32 kept SGDet and PredCls recall@50 (docs: the K sweep), at 20 segments 32 of 190 pairs
AUTO_PAIR_TOPK = 32
# Options left unset (None) take the checkpoint's recommended_thresholds, else these.
BUILTIN_THRESHOLDS = {o.name: o.default for o in OPTIONS if o.model_recommends}


class ModelLoadError(ValueError):
    """The model file is missing, unreadable or does not match the code."""


def _default(name: str) -> Any:  # the option's own type (bool, int, float, str)
    return OPTION[name].default


@dataclass(frozen=True)
class SpeedHint:
    """One line of advice on the precision for this machine; ``warn`` when the chosen one
    is far slower than it should be (not merely a missed speed-up)."""

    text: str
    precision: str  # the precision to use instead
    warn: bool = False


@dataclass
class PipelineOptions:
    """What a Pipeline does; defaults, ranges and descriptions are :data:`.limits.OPTIONS`
    (shared with the node, the CLI and the launch files)."""

    backend: str = _default("backend")  # torch | onnxruntime | tensorrt
    device: str = _default("device")  # cpu | cuda | cuda:N
    precision: str = _default("precision")  # auto | fp32 | fp16 | bf16 | int8
    input_size: int = _default("input_size")  # square model input; 0: the model's choice
    score_threshold: float | None = None  # min segment (class) score; None: see resolved()
    overlap_threshold: float = _default("overlap_threshold")  # min visible share of a mask
    mask_threshold: float = _default("mask_threshold")
    max_objects: int = _default("max_objects")  # best-scoring segments (pairs grow as N^2)
    relation_threshold: float | None = None  # min relation score reported; None: resolved()
    max_relations: int = _default("max_relations")
    relation_alternatives: int = _default("relation_alternatives")  # extra predicates
    prune: bool = _default("prune")  # mask-based dynamic pruning in the relation head
    pair_topk: int = _default("pair_topk")  # pairs the head scores (-1 auto, 0 all)
    tome_ratio: float = _default("tome_ratio")  # ToMe token merging in the relation head
    # "shared": pool all masks once and gather per pair (supplement Alg. 2, the fast path);
    # "per_pair": pool both masks of every pair (Alg. 1, DSFormer) -- same numbers, slower
    mask_embedding: str = "shared"
    compile: bool = False  # torch backend: torch.compile the backbone (first frames are slow)

    # options that need a new backend when changed
    BACKEND_FIELDS = ("backend", "device", "precision", "compile", "input_size")

    def resolved(self, recommended: dict[str, float] | None = None) -> PipelineOptions:
        """These options with each unset (None) threshold filled in: the model's recommended
        value (checkpoint metadata), else ``BUILTIN_THRESHOLDS``. Set values always win."""
        fill = {
            name: (recommended or {}).get(name, default)
            for name, default in BUILTIN_THRESHOLDS.items()
            if getattr(self, name) is None
        }
        return dataclasses.replace(self, **fill) if fill else self

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in OPTION["precision"].choices:
            raise ValueError(
                f"precision must be one of {OPTION['precision'].choices}, got {self.precision!r}"
            )
        for name in RANGES:  # the limits shared with the node, the CLI and the launch files
            value = getattr(self, name)
            reason = None if value is None else check_range(name, value)  # None: resolved()
            if reason:
                raise ValueError(reason)
        if self.backend != "torch" and (self.prune or self.tome_ratio > 0):
            raise ValueError(
                "prune and tome_ratio are not part of the exported head graph: they need "
                f"backend torch (not {self.backend})"
            )
        if self.mask_embedding not in MASK_EMBEDDINGS:
            raise ValueError(
                f"mask_embedding must be shared or per_pair, not {self.mask_embedding!r}"
            )
        if self.backend != "torch" and self.mask_embedding != "shared":
            raise ValueError("mask_embedding per_pair (the Alg. 1 reference) needs backend torch")

    @property
    def head_options(self) -> HeadOptions:
        """The relation head's run-time switches these options ask for."""
        return HeadOptions(prune=self.prune, tome_ratio=self.tome_ratio)


@dataclass
class FramePrediction:
    """Raw prediction of one frame, in the original image frame (for evaluation/export).

    ``rel_probs`` holds sigmoid scores of every ordered pair the head scored (column 0 =
    NONE): all ``N(N-1)``, or those the pair proposals chose.
    """

    id_map: np.ndarray  # (H, W) uint16: 0 = void, i + 1 = segment i
    labels: np.ndarray  # (N,) int64
    scores: np.ndarray  # (N,) float32
    pairs: np.ndarray  # (P, 2) int64 subject, object (segment indices)
    rel_probs: np.ndarray  # (P, 1 + R) float32
    timings_ms: dict[str, float]


def _folder_as_model(path: Path) -> str:
    """Why a folder is not a model, and what to pass instead."""
    from dsflash_ros.runtime.export import META_FILE

    if (path / META_FILE).is_file():
        return (
            f"{path} is an ONNX export (dsflash export onnx), not a checkpoint: pass the "
            ".safetensors it was exported from with the onnxruntime backend (--model CKPT "
            "--backend onnxruntime); its graphs are exported and cached on first use"
        )
    return f"{path} is a folder; give a checkpoint file (.safetensors)"


def _model_origin(model_path: str | Path | None) -> str:
    """Where an unset model path led: ``$DSFLASH_MODEL`` or the embedded default model."""
    if model_path:
        return ""
    if os.environ.get("DSFLASH_MODEL"):
        return " (from $DSFLASH_MODEL; fix or unset it to use the embedded default model)"
    return " (the embedded default model; run `make demo` setup)"


def non_finite_weights(model: torch.nn.Module) -> str | None:
    """Which parameters and buffers hold NaN or Inf (None = all finite).

    Such a model loads and runs, but silently reports nothing (every score is NaN), so it
    is refused at load time with the tensors named.
    """
    bad = []
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad.append((name, int((~torch.isfinite(tensor)).sum())))
    if not bad:
        return None
    total = sum(n for _, n in bad)
    shown = ", ".join(f"{name} ({n})" for name, n in bad[:3])
    more = f" and {len(bad) - 3} more tensor(s)" if len(bad) > 3 else ""
    return f"{total} NaN/Inf weight value(s) in {shown}{more}"


class Pipeline:
    """DSFlash inference on single RGB frames (see the module docstring)."""

    def __init__(
        self,
        model: DSFlash,
        model_id: str,
        options: PipelineOptions | None = None,
        facts: ModelFacts | None = None,
    ) -> None:
        self.facts = facts or ModelFacts()  # training domain + recommended thresholds
        self.allocator = allocator.tune()  # frames keep their memory mapped (once per process)
        options = options or PipelineOptions()
        # the input size in force: the one asked for, else the model's recommended, else its own
        size = options.input_size or self.facts.input_size or model.image_size
        self.model = resize_input(model, size)  # ConfigError (a ValueError) if it cannot
        options = dataclasses.replace(options, input_size=size)
        self.options = options.resolved(self.facts.thresholds)
        self.options.validate()
        self._check_model_limits(self.options)
        self.model_id = model_id
        o = self.options
        # the native-bf16 probe is looked up here at call time (tests replace it)
        self.precision: PrecisionChoice = resolve_precision(
            o.precision, o.backend, o.device, cpu_has_native_bf16
        )
        self.backend: Backend = create_backend(
            o.backend, self.model, o.device, self.precision.precision, **self._backend_kwargs()
        )
        self.device = self.backend.device

    def _backend_kwargs(self) -> dict[str, object]:
        o = self.options
        if o.backend == "tensorrt":  # the engine's optimisation profile is sized for this
            return {"max_objects": o.max_objects or 50}
        if o.backend == "torch" and o.compile:
            return {"compile": True}
        return {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls, model_path: str | Path | None = None, options: PipelineOptions | None = None
    ) -> Pipeline:
        """Load a checkpoint (``None`` or ``""``: the embedded default model)."""
        path = Path(model_path) if model_path else default_model_path()
        if path.is_dir():
            raise ModelLoadError(_folder_as_model(path))
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}{_model_origin(model_path)}")
        try:
            model, model_id, extra = load_model(path)
            facts = ModelFacts.from_extra(extra)
        except CheckpointError as e:
            raise ModelLoadError(str(e)) from e
        except ProvenanceError as e:
            raise ModelLoadError(f"{path}: {e}") from e
        bad = non_finite_weights(model)
        if bad:
            raise ModelLoadError(
                f"{path}: {bad}; the checkpoint is corrupt or its training diverged"
            )
        return cls(model, model_id, options, facts)

    @classmethod
    def random(
        cls, preset: str = "tiny", options: PipelineOptions | None = None, seed: int = 0
    ) -> Pipeline:
        """Random weights (tests, benchmarks); the model id says so."""
        return cls(build_model(preset, seed=seed), f"{preset}-random-seed{seed}", options)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def warning(self) -> str | None:
        """One line for the user when the model only ever saw synthetic scenes, else None."""
        return self.facts.warning(self.model_id)

    @property
    def speed_hint(self) -> SpeedHint | None:
        """Advice when another precision suits this CPU far better (torch on CPU only)."""
        o = self.options
        if (o.backend, self.device.type) != ("torch", "cpu"):
            return None
        native = cpu_has_native_bf16()
        precision = self.precision.precision
        if precision == "fp32" and native:
            return SpeedHint(
                "this CPU computes bf16 natively (AVX512-BF16/AMX): precision bf16 runs the "
                "model 1.4-2x faster, within half a point of fp32's accuracy in our measurements",
                "bf16",
            )
        if precision == "bf16" and not native:
            return SpeedHint(
                "this CPU has no native bf16 (no AVX512-BF16 or AMX), so torch emulates it: "
                "bf16 ran 10-13x slower than fp32 on such a CPU in our measurements",
                "fp32",
                warn=True,
            )
        return None

    def check_options(self, **changes: object) -> PipelineOptions:
        """The options after ``changes``; ``ValueError`` (with the reason) if not allowed."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(PipelineOptions)}
        if unknown:
            raise ValueError(f"unknown pipeline option(s): {', '.join(sorted(unknown))}")
        frozen = set(changes) & set(PipelineOptions.BACKEND_FIELDS)
        if any(changes[k] != getattr(self.options, k) for k in frozen):
            raise ValueError(f"{', '.join(sorted(frozen))} cannot change on a loaded pipeline")
        updated = dataclasses.replace(self.options, **changes).resolved(self.facts.thresholds)
        updated.validate()
        self._check_model_limits(updated)
        limit = getattr(self.backend, "max_objects", None)  # an engine's fixed profile
        if limit is not None and not 0 < updated.max_objects <= limit:
            raise ValueError(
                f"max_objects must be in 1..{limit}: the {self.backend.name} engine was built "
                "for that many segments (reload the model to change it)"
            )
        return updated

    def _check_model_limits(self, options: PipelineOptions) -> None:
        """Limits that depend on the loaded model: alternatives need that many predicates,
        pair proposals a scorer."""
        if options.pair_topk > 0 and self.model.head.proposal is None:
            raise ValueError(NO_PROPOSAL_SCORER)
        most = max(self.config.head.num_predicates - 1, 0)
        if options.relation_alternatives > most:
            raise ValueError(
                f"relation_alternatives must be in [0, {most}] for this model "
                f"({self.config.head.num_predicates} predicates), got "
                f"{options.relation_alternatives}"
            )

    def pair_topk(self, options: PipelineOptions | None = None) -> int:
        """The pairs the relation head runs per frame (0 = all) under ``options`` (None =
        the current ones): ``pair_topk``, with auto (-1) resolved for this model."""
        k = (options or self.options).pair_topk
        if k >= 0:
            return k
        return AUTO_PAIR_TOPK if self.model.head.proposal is not None else 0

    def set_options(self, **changes: object) -> None:
        """Change thresholds/limits at run time (not backend, device or precision)."""
        self.options = self.check_options(**changes)

    # ------------------------------------------------------------------ inference
    def __call__(self, rgb: np.ndarray, options: PipelineOptions | None = None) -> SceneGraphResult:
        """Scene graph of one (H, W, 3) uint8 RGB image, with ``options`` (from
        :meth:`check_options` or this pipeline's ``options``; default: the current ones).

        One snapshot of the options serves the whole frame, as ``set_options`` may run in
        another thread meanwhile; a caller that uses the options itself (the node's tracking
        reads the relation threshold) passes the snapshot it read, so both agree."""
        t0 = time.perf_counter()
        options = options or self.options
        pixels, info, timings = self._preprocess(rgb, t0)
        segments, features, finite = self._segments(pixels, info, timings, options)
        result = self._relations_and_result(segments, features, info, timings, options)
        timings["total"] = (time.perf_counter() - t0) * 1e3
        result.timings_ms = timings
        result.scores_nonfinite = not finite
        return result

    def predict(
        self,
        rgb: np.ndarray,
        masks: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        relations: bool = True,
    ) -> FramePrediction:
        """Raw scores of all ordered pairs. With ``masks (N, H, W)`` and ``labels (N,)``
        given (PredCls), the segmentation is replaced by them; otherwise SGDet. Without
        ``relations`` the relation stage is left out (no pairs): the segments alone."""
        t0 = time.perf_counter()
        options = self.options
        pixels, info, timings = self._preprocess(rgb, t0)
        if masks is None:
            segments, features = self.segments(pixels, info, timings, options)
            segments, id_map = visible_segments(segments, info)
        else:  # given segments keep their indices (pairs refer to them), visible or not
            if labels is None or len(labels) != len(masks):
                raise ValueError("PredCls needs one label per given mask")
            features = self.backend.run_backbone(pixels[None]).features
            segments = self._given_segments(masks, labels, info)
            id_map = segments_to_id_map(segments.masks, info.content_hw, info.orig_hw)
        if relations:
            rel = self._timed_relations(segments, features, timings, options)
        else:
            none = self.config.head.num_predicates + 1
            rel = RelationLogits(torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, none), 0)
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return FramePrediction(
            id_map=id_map.cpu().numpy(),
            labels=segments.labels.cpu().numpy().astype(np.int64),
            scores=segments.scores.float().cpu().numpy(),
            pairs=rel.pairs.cpu().numpy().astype(np.int64),
            rel_probs=torch.sigmoid(rel.logits).cpu().numpy().astype(np.float32),
            timings_ms=timings,
        )

    # ------------------------------------------------------------------ stages
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _lap(self, timings: dict[str, float], name: str, start: float) -> float:
        self._sync()
        now = time.perf_counter()
        timings[name] = (now - start) * 1e3
        return now

    def preprocess(self, rgb: np.ndarray) -> tuple[torch.Tensor, LetterboxInfo]:
        """The letterboxed frame ``pixels (3, S, S)`` on the backend's device, and its
        geometry (:func:`.preprocess.letterbox`)."""
        return letterbox(rgb, self.model.image_size, device=self.device)

    def _preprocess(
        self, rgb: np.ndarray, t0: float
    ) -> tuple[torch.Tensor, LetterboxInfo, dict[str, float]]:
        pixels, info = self.preprocess(rgb)
        timings: dict[str, float] = {}
        self._lap(timings, "preprocess", t0)
        return pixels, info, timings

    def segments(
        self,
        pixels: torch.Tensor,
        info: LetterboxInfo,
        timings: dict[str, float],
        options: PipelineOptions | None = None,
    ) -> tuple[PanopticSegments, torch.Tensor]:
        """The backbone pass and panoptic post-processing of one letterboxed frame
        (``pixels (3, S, S)``, from :func:`.preprocess.letterbox`): the segments in the model
        frame and the block features; ``timings`` gains ``backbone`` and ``postprocess``.
        ``options`` None = the pipeline's current options."""
        segments, features, _ = self._segments(pixels, info, timings, options)
        return segments, features

    def _segments(
        self,
        pixels: torch.Tensor,
        info: LetterboxInfo,
        timings: dict[str, float],
        options: PipelineOptions | None = None,
    ) -> tuple[PanopticSegments, torch.Tensor, bool]:
        """:meth:`segments`, and whether any query's class scores were finite (weights
        scaled far out of range give NaN/inf everywhere, and so no segment at all)."""
        t = time.perf_counter()
        out = self.backend.run_backbone(pixels[None])
        t = self._lap(timings, "backbone", t)
        o = options or self.options
        cfg = PanopticThresholds(
            o.score_threshold, o.overlap_threshold, o.mask_threshold, o.max_objects
        )
        segments = postprocess_panoptic(
            out.class_logits[0],
            out.mask_logits[0],
            self.model.is_thing,
            self.model.image_size,
            info.content_hw,
            cfg,
        )
        finite = bool(torch.isfinite(out.class_logits[0].float().softmax(-1)).all(-1).any())
        self._lap(timings, "postprocess", t)
        return segments, out.features, finite

    def _given_segments(
        self, masks: np.ndarray, labels: np.ndarray, info: LetterboxInfo
    ) -> PanopticSegments:
        """Letterbox ground-truth masks into the model frame, exactly as training does."""
        m = letterbox_masks(masks, info, self.model.image_size, self.device)
        lab = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        return PanopticSegments(m, lab, torch.ones(len(m), device=self.device))

    def relations(
        self,
        features: torch.Tensor,
        masks: torch.Tensor,
        bidirectional: bool | None = None,
        options: PipelineOptions | None = None,
        labels: torch.Tensor | None = None,
        before_head: Callable[[], object] | None = None,
    ) -> RelationLogits:
        """The relation stage on one image: logits of the ordered pairs of its segments (all
        of them, or those the pair proposals choose).

        ``features (1, 4, D, g, g)`` from the backbone, ``masks (N, S, S)`` in the model frame,
        ``labels (N,)`` their classes (for pair proposals); the options' head switches, mask
        embedding and ``pair_topk`` apply (:mod:`.relations`).
        ``bidirectional`` None = the model's own mode; ``options`` None = the current ones.
        ``before_head`` is called once the masks are embedded and the pairs chosen, just
        before the head runs (the benchmark times the two parts with it).
        """
        o = options or self.options
        head_options = o.head_options

        def run_head(
            ratios: torch.Tensor, boxes: torch.Tensor, pairs: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if before_head is not None:
                before_head()
            return self.backend.run_head(features, ratios, boxes, pairs, head_options)

        return relation_logits(
            run_head,
            self.model.head,
            masks,
            bidirectional=bidirectional,
            mask_embedding=o.mask_embedding,
            labels=labels,
            pair_topk=self.pair_topk(o),
        )

    def _timed_relations(
        self,
        segments: PanopticSegments,
        features: torch.Tensor,
        timings: dict[str, float],
        options: PipelineOptions,
    ) -> RelationLogits:
        t = time.perf_counter()
        rel = self.relations(features, segments.masks, options=options, labels=segments.labels)
        self._lap(timings, "relation", t)
        return rel

    def _relations_and_result(
        self,
        segments: PanopticSegments,
        features: torch.Tensor,
        info: LetterboxInfo,
        timings: dict[str, float],
        options: PipelineOptions,
    ) -> SceneGraphResult:
        rel = self._timed_relations(segments, features, timings, options)
        t = time.perf_counter()
        result = self.result(segments, rel, info, options)
        self._lap(timings, "result", t)
        return result

    def result(
        self,
        segments: PanopticSegments,
        rel: RelationLogits,
        info: LetterboxInfo,
        options: PipelineOptions | None = None,
    ) -> SceneGraphResult:
        """The result stage: the segments' id image in the original frame, and the scene
        graph the options keep of ``rel`` (:func:`.frame_result.build_result`)."""
        id_map = segments_to_id_map(segments.masks, info.content_hw, info.orig_hw)
        return build_result(
            id_map,
            segments.labels,
            segments.scores,
            rel.pairs,
            rel.logits,
            self.config,
            options or self.options,
            self.model_id,
        )


def visible_segments(
    segments: PanopticSegments, info: LetterboxInfo
) -> tuple[PanopticSegments, torch.Tensor]:
    """The segments that keep at least one pixel in the original image, and its id map.

    A segment of a few model pixels can vanish when the id map is resized to a smaller
    original image; its pairs could never be matched, so they must not take ranking slots.
    """
    id_map = segments_to_id_map(segments.masks, info.content_hw, info.orig_hw)
    n = len(segments.labels)
    present = torch.bincount(id_map.reshape(-1).to(torch.int32), minlength=n + 1)[1:] > 0
    if bool(present.all()):
        return segments, id_map
    lut = torch.zeros(n + 1, dtype=torch.int32, device=id_map.device)
    lut[1:][present] = torch.arange(1, int(present.sum()) + 1, device=id_map.device).int()
    kept = PanopticSegments(*(t[present] for t in segments))
    return kept, lut[id_map.to(torch.int32)].to(torch.uint16)
