"""Checkpoints: safetensors weights with the ``ModelConfig`` as JSON inside the header.

A checkpoint is one self-describing file. The header metadata holds a single key ``dsflash``
whose JSON value is ``{"format_version", "config", "extra"}`` (a single key keeps the file
byte-for-byte reproducible: safetensors writes several metadata keys in random order).
A sidecar ``<name>.yaml`` next to it (same stem) is used only when the header carries no
config (e.g. weights exported by another tool).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from dsflash_ros.model.config import ModelConfig
from dsflash_ros.model.files import METADATA_KEY, file_sha12

FORMAT_VERSION = 1
_SHOWN = 5  # how many offending keys an error message names


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or lacks what we need."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    pass


class CheckpointMismatchError(CheckpointError):
    """Weights do not fit a module: missing / unexpected keys or wrong shapes."""

    def __init__(
        self,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:_SHOWN])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:_SHOWN])})")
        if mismatched:
            shown = "; ".join(
                f"{name}: expected {list(exp)}, found {list(got)}"
                for name, exp, got in mismatched[:_SHOWN]
            )
            parts.append(f"{len(mismatched)} shape mismatches ({shown})")
        super().__init__("weights do not match the model: " + " | ".join(parts))


def _plain_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors; aliased storages are cloned (safetensors refuses shared memory)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():
            t = t.clone()
        seen.add(ptr)
        out[name] = t
    return out


def save_checkpoint(
    path: str | Path,
    module: nn.Module,
    config: ModelConfig,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``module``'s weights plus ``config`` (and JSON-able extras) to ``path`` atomically."""
    path = Path(path)
    config.validate()
    payload = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "extra": dict(extra_metadata or {}),
    }
    try:
        metadata = {METADATA_KEY: json.dumps(payload, sort_keys=True)}
    except (TypeError, ValueError) as e:
        raise ValueError(f"extra_metadata must be JSON-serialisable: {e}") from None
    return _write_atomic(path, _plain_tensors(module.state_dict()), metadata)


def _write_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shipped model must be world-readable
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def update_metadata(
    path: str | Path, changes: Mapping[str, Any], out: str | Path | None = None
) -> Path:
    """Rewrite a checkpoint with ``changes`` merged into its extra metadata (a value of
    ``None`` removes the key); weights and config stay exactly as they are."""
    path = Path(path)
    tensors, config, extra = read_checkpoint(path)
    merged = {k: v for k, v in {**extra, **changes}.items() if v is not None}
    payload = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "extra": merged}
    try:
        metadata = {METADATA_KEY: json.dumps(payload, sort_keys=True)}
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata must be JSON-serialisable: {e}") from None
    return _write_atomic(Path(out) if out else path, _plain_tensors(tensors), metadata)


def _read_header_and_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from e
    return tensors, metadata


def read_checkpoint(
    path: str | Path,
) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    """Return ``(state_dict, config, metadata)``; ``metadata`` holds the saved extras."""
    path = Path(path)
    tensors, header = _read_header_and_tensors(path)
    sidecar = path.with_suffix(".yaml")
    try:
        payload = json.loads(header[METADATA_KEY]) if METADATA_KEY in header else {}
        if not isinstance(payload, dict):
            raise CheckpointError(f"{path}: corrupt dsflash metadata")
        if "config" in payload:
            config = ModelConfig.from_dict(payload["config"])
        elif sidecar.is_file():
            config = ModelConfig.from_yaml(sidecar)
        else:
            raise CheckpointError(
                f"{path} carries no dsflash model config (not written by save_checkpoint) "
                f"and there is no sidecar {sidecar.name}"
            )
    except CheckpointError:
        raise
    except (ValueError, TypeError, yaml.YAMLError) as e:  # ConfigError, JSON errors, bad types
        raise CheckpointError(f"{path}: invalid model config: {e}") from e
    extra = payload.get("extra") or {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: corrupt extra metadata")
    return tensors, config, extra


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The extra metadata saved with a checkpoint, without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = dict(f.metadata() or {})
        payload = json.loads(header[METADATA_KEY]) if METADATA_KEY in header else {}
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable metadata ({e})") from e
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from e
    extra = payload.get("extra") if isinstance(payload, dict) else None
    return dict(extra) if isinstance(extra, dict) else {}


def load_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strictly load ``state_dict`` into ``module``; any mismatch -> ``CheckpointMismatchError``."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        (k, tuple(expected[k].shape), tuple(state_dict[k].shape))
        for k in expected
        if k in state_dict and expected[k].shape != state_dict[k].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(missing, unexpected, mismatched)
    module.load_state_dict(dict(state_dict), strict=True)


def model_id(config: ModelConfig, state_dict: Mapping[str, torch.Tensor]) -> str:
    """Short content hash (12 hex) over the config and every tensor's name, dtype, shape, bytes.

    Independent of file layout/metadata order, so it identifies *the model*, e.g. as a cache key
    for exported engines.
    """
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def file_id(path: str | Path) -> str:
    """sha256 of a file's bytes, first 12 hex (provenance of the exact file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"file not found: {path}")
    return file_sha12(path)
