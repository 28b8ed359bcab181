"""Where exported ONNX graphs and built TensorRT engines are cached, and under which keys.

Pure Python (no onnxruntime / TensorRT import), so the rules are unit-tested everywhere.

Layout under the cache root (``$DSFLASH_CACHE_DIR``, else ``$XDG_CACHE_HOME/dsflash``, else
``~/.cache/dsflash``)::

    onnx/<model hash>-s<size>-op<opset>-<precision>-<exporter>-v<format>/
        backbone.onnx  head.onnx  [*.onnx.data]  export.json
    tensorrt/<gpu slug>-sm<cc>/<graph>-<key digest>/
        engine.plan  key.json

An ONNX entry is complete once its folder exists (it is written elsewhere and renamed into
place). A TensorRT engine is used only if ``key.json`` repeats *every* key component of the
current request (ONNX content hash, TensorRT version, GPU name, compute capability,
precision, typing mode, profile shapes) and the plan's own hash matches; anything else is a
stale or corrupt entry and is rebuilt — an engine from another TensorRT version or GPU can
crash or silently compute garbage (NVIDIA's TensorRT documentation: serialized engines are
not portable across TensorRT versions or GPU models).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CACHE_ENV = "DSFLASH_CACHE_DIR"
ENGINE_FILE = "engine.plan"
KEY_FILE = "key.json"

Shape = tuple[int, ...]


def default_cache_root() -> Path:
    """``$DSFLASH_CACHE_DIR``, else ``$XDG_CACHE_HOME/dsflash``, else ``~/.cache/dsflash``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "dsflash"


def _slug(text: str) -> str:
    """File-name-safe lower-case form of e.g. a GPU name (``NVIDIA H100 80GB HBM3``)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def sha256_files(paths: Iterable[str | Path]) -> str:
    """One sha256 over the names and bytes of ``paths`` (sorted by name), full hex."""
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- ONNX


@dataclass(frozen=True)
class OnnxKey:
    """What an exported ONNX pair depends on."""

    model_hash: str  # content hash of config + weights (checkpoint.model_id)
    image_size: int
    opset: int
    precision: str
    exporter: str
    format_version: int

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-zA-Z_.-]+", self.model_hash):
            raise ValueError(f"model hash must be a plain token, got {self.model_hash!r}")

    @property
    def dirname(self) -> str:
        return (
            f"{self.model_hash}-s{self.image_size}-op{self.opset}-{self.precision}-"
            f"{self.exporter}-v{self.format_version}"
        )

    def directory(self, root: str | Path) -> Path:
        return Path(root) / "onnx" / self.dirname


# ----------------------------------------------------------------------------- TensorRT


@dataclass(frozen=True)
class ProfileShape:
    """One dynamic input's optimisation-profile shapes (static inputs: min = opt = max)."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        if not len(self.min) == len(self.opt) == len(self.max):
            raise ValueError(f"{self.name}: min/opt/max shapes must have the same rank")
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise ValueError(f"{self.name}: need min <= opt <= max, got {self}")
        if any(d < 0 for d in self.min):
            raise ValueError(f"{self.name}: negative dimension in {self.min}")


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on."""

    graph: str  # "backbone" | "head"
    onnx_sha256: str  # content of the ONNX graph (+ external data) it was built from
    trt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    precision: str  # fp32 | fp16 | bf16 | int8
    typing: str  # "strong" (precision from the ONNX, TRT 11) | "weak" (builder flags, TRT 10)
    profiles: tuple[ProfileShape, ...] = ()

    def components(self) -> dict[str, Any]:
        """JSON-able form, compared field by field when loading."""
        data = asdict(self)
        data["profiles"] = [
            {"name": p.name, "min": list(p.min), "opt": list(p.opt), "max": list(p.max)}
            for p in self.profiles
        ]
        return data

    def digest(self) -> str:
        text = json.dumps(self.components(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def directory(self, root: str | Path) -> Path:
        cc = self.compute_capability.replace(".", "")
        return (
            Path(root)
            / "tensorrt"
            / f"{_slug(self.gpu_name)}-sm{cc}"
            / f"{self.graph}-{self.digest()}"
        )


class EngineCache:
    """Serialized engines on disk, keyed by :class:`EngineKey`; never returns a stale one."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def paths(self, key: EngineKey) -> tuple[Path, Path]:
        d = key.directory(self.root)
        return d / ENGINE_FILE, d / KEY_FILE

    def load(self, key: EngineKey) -> bytes | None:
        """The cached plan for ``key``, or None when absent, stale or corrupt."""
        engine_path, key_path = self.paths(key)
        try:
            meta = json.loads(key_path.read_text())
            plan = engine_path.read_bytes()
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("key") != key.components():
            return None  # built for something else (other TRT / GPU / ONNX / shapes)
        if meta.get("engine_sha256") != hashlib.sha256(plan).hexdigest():
            return None  # truncated or overwritten plan
        return plan

    def store(self, key: EngineKey, plan: bytes) -> Path:
        """Write plan + key atomically (plan first: a key file always describes its plan)."""
        engine_path, key_path = self.paths(key)
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(engine_path, plan)
        meta = {"key": key.components(), "engine_sha256": hashlib.sha256(plan).hexdigest()}
        _atomic_write(key_path, json.dumps(meta, indent=2).encode())
        return engine_path

    def load_or_build(self, key: EngineKey, build: Callable[[], bytes]) -> tuple[bytes, bool]:
        """``(plan, built)``: the cached plan, or a fresh ``build()`` stored for next time."""
        plan = self.load(key)
        if plan is not None:
            return plan, False
        plan = build()
        if not plan:
            raise RuntimeError(f"engine build for {key.graph} returned no data")
        self.store(key, plan)
        return plan, True


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ----------------------------------------------------------------------------- profiles


def num_pairs(num_segments: int, bidirectional: bool) -> int:
    """Relation-head passes for ``N`` segments: ``N(N-1)/2`` (bidirectional) or ``N(N-1)``."""
    if num_segments < 0:
        raise ValueError(f"number of segments must be >= 0, got {num_segments}")
    full = num_segments * (num_segments - 1)
    return full // 2 if bidirectional else full


def head_profile(
    features_shape: Sequence[int],
    num_patches: int,
    max_objects: int,
    bidirectional: bool = True,
    opt_objects: int = 20,
    max_pairs: int | None = None,
) -> tuple[ProfileShape, ...]:
    """TensorRT optimisation profile of the head graph.

    ``segments``: min 2, opt ``opt_objects``, max ``max_objects``; ``pairs``: min 1, opt the
    passes of ``opt_objects`` segments (190 for 20 bidirectional), max the passes of
    ``max_objects`` (capped by ``max_pairs``, the per-call chunk; larger frames are chunked).
    """
    if max_objects < 2:
        raise ValueError(f"max_objects must be >= 2 for the head to run, got {max_objects}")
    if num_patches < 1:
        raise ValueError("num_patches must be positive")
    opt_objects = min(max(opt_objects, 2), max_objects)
    pmax = num_pairs(max_objects, bidirectional)
    if max_pairs is not None:
        if max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
        pmax = min(pmax, max_pairs)
    popt = min(num_pairs(opt_objects, bidirectional), pmax)
    feats = tuple(int(d) for d in features_shape)
    return (
        ProfileShape("features", feats, feats, feats),
        ProfileShape(
            "ratios", (2, num_patches), (opt_objects, num_patches), (max_objects, num_patches)
        ),
        ProfileShape("boxes", (2, 4), (opt_objects, 4), (max_objects, 4)),
        ProfileShape("pairs", (1, 2), (popt, 2), (pmax, 2)),
    )
