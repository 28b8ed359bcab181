"""Cache keys and file layout of exported ONNX graphs and TensorRT engines (pure Python)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dsflash_ros.runtime.engine_cache import (
    CACHE_ENV,
    ENGINE_FILE,
    KEY_FILE,
    EngineCache,
    EngineKey,
    OnnxKey,
    ProfileShape,
    default_cache_root,
    sha256_files,
)

PROFILE = (
    ProfileShape("features", (1, 4, 8, 4, 4), (1, 4, 8, 4, 4), (1, 4, 8, 4, 4)),
    ProfileShape("pairs", (1, 2), (190, 2), (1225, 2)),
)


def make_key(**changes: object) -> EngineKey:
    key = EngineKey(
        graph="head",
        onnx_sha256="a" * 64,
        trt_version="10.13.3.9",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        precision="fp16",
        typing="weak",
        profiles=PROFILE,
    )
    return dataclasses.replace(key, **changes)


def test_default_root_env_and_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "explicit"))
    assert default_cache_root() == tmp_path / "explicit"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "dsflash"


def test_onnx_key_layout_and_components(tmp_path: Path) -> None:
    key = OnnxKey("0123456789ab", 640, 18, "fp32", "legacy", 1)
    assert key.directory(tmp_path) == tmp_path / "onnx" / "0123456789ab-s640-op18-fp32-legacy-v1"
    variants = [
        dataclasses.replace(key, model_hash="ffffffffffff"),
        dataclasses.replace(key, image_size=320),
        dataclasses.replace(key, opset=23),
        dataclasses.replace(key, precision="fp16"),
        dataclasses.replace(key, exporter="dynamo"),
        dataclasses.replace(key, format_version=2),
    ]
    names = {key.dirname, *(v.dirname for v in variants)}
    assert len(names) == 1 + len(variants)  # every component changes the folder
    with pytest.raises(ValueError, match="plain token"):
        OnnxKey("../evil", 640, 18, "fp32", "legacy", 1)


@pytest.mark.parametrize(
    "change",
    [
        {"graph": "backbone"},
        {"onnx_sha256": "b" * 64},
        {"trt_version": "11.0.0.1"},
        {"gpu_name": "NVIDIA GeForce RTX 3090"},
        {"compute_capability": "8.6"},
        {"precision": "bf16"},
        {"typing": "strong"},
        {"profiles": (PROFILE[0], ProfileShape("pairs", (1, 2), (190, 2), (4096, 2)))},
    ],
)
def test_engine_key_digest_changes_with_each_component(change: dict) -> None:
    assert make_key(**change).digest() != make_key().digest()


def test_engine_key_layout(tmp_path: Path) -> None:
    key = make_key()
    d = key.directory(tmp_path)
    assert d.parent == tmp_path / "tensorrt" / "nvidia-h100-80gb-hbm3-sm90"
    assert d.name == f"head-{key.digest()}"
    assert make_key().digest() == key.digest()  # deterministic


def test_profile_shape_validation() -> None:
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ProfileShape("pairs", (1, 2), (500, 2), (100, 2))
    with pytest.raises(ValueError, match="rank"):
        ProfileShape("pairs", (1, 2), (2,), (3, 2))


def test_store_then_load_roundtrip(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    key = make_key()
    assert cache.load(key) is None
    path = cache.store(key, b"plan-bytes")
    assert path.name == ENGINE_FILE and (path.parent / KEY_FILE).is_file()
    assert cache.load(key) == b"plan-bytes"
    assert not any(p.name.endswith(".tmp") or p.name.startswith(".") for p in path.parent.iterdir())


def test_load_or_build_builds_once(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    calls: list[int] = []

    def build() -> bytes:
        calls.append(1)
        return b"engine-v1"

    assert cache.load_or_build(make_key(), build) == (b"engine-v1", True)
    assert cache.load_or_build(make_key(), build) == (b"engine-v1", False)
    assert len(calls) == 1
    # another TensorRT version is another entry: built, never the old plan
    plan, built = cache.load_or_build(make_key(trt_version="10.14.1"), lambda: b"engine-v2")
    assert (plan, built) == (b"engine-v2", True)


def test_stale_key_file_is_rebuilt(tmp_path: Path) -> None:
    """A key.json that does not repeat the request (e.g. a copied cache from another GPU
    that landed in this folder) is never trusted."""
    cache = EngineCache(tmp_path)
    key = make_key()
    engine_path, key_path = cache.paths(key)
    cache.store(key, b"old")
    meta = json.loads(key_path.read_text())
    meta["key"]["gpu_name"] = "NVIDIA GeForce GTX 1080"
    key_path.write_text(json.dumps(meta))
    assert cache.load(key) is None
    assert cache.load_or_build(key, lambda: b"new") == (b"new", True)
    assert engine_path.read_bytes() == b"new"
    assert cache.load(key) == b"new"


def test_corrupt_or_partial_entries_are_rebuilt(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    key = make_key()
    engine_path, key_path = cache.paths(key)
    cache.store(key, b"good-plan")
    engine_path.write_bytes(b"good-pl")  # truncated plan: hash mismatch
    assert cache.load(key) is None
    cache.store(key, b"good-plan")
    key_path.write_text("{not json")
    assert cache.load(key) is None
    key_path.unlink()  # plan without key file
    assert cache.load(key) is None
    assert cache.load_or_build(key, lambda: b"rebuilt") == (b"rebuilt", True)


def test_empty_build_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no data"):
        EngineCache(tmp_path).load_or_build(make_key(), lambda: b"")


def test_sha256_files_tracks_names_and_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "head.onnx", tmp_path / "head.onnx.data"
    a.write_bytes(b"graph")
    b.write_bytes(b"weights")
    first = sha256_files([a, b])
    assert sha256_files([b, a]) == first  # order-independent
    b.write_bytes(b"weights2")
    assert sha256_files([a, b]) != first
    assert sha256_files([a]) != sha256_files([a, b])
