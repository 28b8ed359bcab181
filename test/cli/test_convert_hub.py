"""`dsflash model convert <org/name>` against a Hugging Face Hub cache built here, offline.

The cache has the layout huggingface_hub reads (``models--org--name/snapshots/<commit>/...``
and ``refs/main``); the conversions run in a subprocess with ``HF_HUB_OFFLINE=1`` and
``HF_HUB_CACHE`` pointing at it, so no network is ever used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dsflash_ros.model.backbone import EoMTBackbone
from dsflash_ros.model.checkpoint import read_checkpoint
from dsflash_ros.model.convert_eomt import ConvertError, resolve_source

from ..conftest import micro_backbone_config
from ..model.test_tue_mps import dinov2_config, random_backbone, to_timm_layout

pytest.importorskip("huggingface_hub")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def hub_repo(
    cache: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT, main: bool = True
) -> Path:
    """A cached Hub model repository at ``commit`` (``refs/main`` points at it if ``main``)."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    (root / "refs").mkdir(exist_ok=True)
    if main:
        (root / "refs" / "main").write_text(commit)
    return snapshot


def hf_layout_files(tmp: Path, write_hf_eomt) -> tuple[dict[str, bytes], EoMTBackbone]:
    """config.json + model.safetensors of an EomtDinov3ForUniversalSegmentation save."""
    folder = tmp / "hf_save"
    labels = ["person", "cup", "wall-other-merged"]
    model = write_hf_eomt(folder, micro_backbone_config(), labels, seed=1)
    return {
        name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")
    }, model


def original_layout_files(tmp: Path) -> tuple[dict[str, bytes], EoMTBackbone]:
    """What the tue-mps repositories hold: a minimal config.json + the original weights."""
    cfg = dinov2_config()
    cfg.num_heads = 1  # the converter's assumption without heads in config.json: 32 // 64 -> 1
    model = random_backbone(cfg)
    state = to_timm_layout(model.state_dict(), cfg.num_blocks)
    del state["network.attn_mask_probs"]  # num_blocks must then come from config.json
    torch.save(state, tmp / "pytorch_model.bin")
    config = {
        "model_type": "eomt",
        "backbone": "vit_small_patch14_reg4_dinov2",
        "image_size": 64,
        "patch_size": 16,
        "num_queries": 5,
        "num_blocks": cfg.num_blocks,
        "num_labels": 7,
    }
    files = {
        "config.json": json.dumps(config).encode(),
        "pytorch_model.bin": (tmp / "pytorch_model.bin").read_bytes(),
    }
    return files, model


SCRIPT = """
import sys
from dsflash_ros.cli import main
for argv in {calls!r}:
    print("=== " + " ".join(argv), flush=True)
    print("=== " + " ".join(argv), file=sys.stderr, flush=True)
    print("rc", main(argv), flush=True)
"""


def run_offline(cache: Path, home: Path, calls: list[list[str]]) -> dict[str, tuple[str, str]]:
    """Run the CLI calls in one offline process; per call: (stdout, stderr)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(home))
    env.pop("HF_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(calls=calls)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout.split("=== ")[1:]
    err = proc.stderr.split("=== ")[1:]
    return {" ".join(c): (o, e) for c, o, e in zip(calls, out, err, strict=True)}


def test_hub_ids_convert_from_the_cache_offline(tmp_path: Path, write_hf_eomt) -> None:
    cache = tmp_path / "hub"
    hf_files, hf_model = hf_layout_files(tmp_path, write_hf_eomt)
    hub_repo(cache, "acme/eomt-micro-coco", hf_files)
    hub_repo(cache, "acme/eomt-micro-coco", {}, OTHER, main=False)  # an unrelated older snapshot
    orig_files, orig_model = original_layout_files(tmp_path)
    hub_repo(cache, "tue-mps/micro_panoptic_eomt", orig_files)

    hf_out, orig_out = tmp_path / "hf.safetensors", tmp_path / "orig.safetensors"
    calls = [
        ["model", "convert", "acme/eomt-micro-coco", "--out", str(hf_out)],
        ["model", "convert", "tue-mps/micro_panoptic_eomt", "--out", str(orig_out)],
        ["model", "info", str(hf_out)],
        ["model", "convert", "acme/not-cached", "--out", str(tmp_path / "x.safetensors")],
    ]
    results = run_offline(cache, tmp_path / "home", calls)
    outputs = list(results.values())

    stdout, stderr = outputs[0]
    assert "rc 0" in stdout and "wrote" in stdout and "head untrained" in stdout, stderr
    state, config, extra = read_checkpoint(hf_out)
    assert config.name == "eomt-eomt-micro-coco"
    assert config.class_names == ["person", "cup", "wall-other-merged"]
    assert config.is_thing == [True, True, False]
    assert extra["hub_model"] == "acme/eomt-micro-coco" and extra["hub_revision"] == COMMIT
    assert extra["backbone_source"] == "huggingface-eomt" and extra["domain"] == "real"
    for key, value in hf_model.state_dict().items():
        assert torch.equal(state[f"backbone.{key}"], value), key

    stdout, stderr = outputs[1]
    assert "rc 0" in stdout, stderr
    state, config, extra = read_checkpoint(orig_out)
    assert extra["backbone_source"] == "tue-mps-eomt" and extra["hub_revision"] == COMMIT
    assert extra["backbone_checkpoint"] == "pytorch_model.bin"
    assert config.backbone.num_blocks == 2 and config.backbone.flavour == "dinov2"
    for key, value in orig_model.state_dict().items():
        assert torch.equal(state[f"backbone.{key}"], value), key

    stdout, stderr = outputs[2]  # a converted real model: no synthetic-model warning
    assert "rc 0" in stdout and "domain:      real" in stdout
    assert "synthetic" not in stderr

    stdout, stderr = outputs[3]  # not in the cache and offline: one clear line, exit 2
    assert "rc 2" in stdout
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("model ")]
    assert len(lines) == 1, stderr
    assert "cannot get 'acme/not-cached' from the Hugging Face Hub" in lines[0]
    assert "Traceback" not in stderr


def test_local_paths_and_non_ids(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    source = resolve_source(tmp_path / "dir")
    assert source.path == tmp_path / "dir" and source.hub_id is None
    with pytest.raises(ConvertError, match="directory not found"):
        resolve_source(tmp_path / "not" / "here")
    with pytest.raises(ConvertError, match="--revision applies to Hub"):
        resolve_source(tmp_path / "dir", revision="main")


def test_hf_directory_with_a_legacy_pytorch_model_bin(tmp_path: Path, write_hf_eomt) -> None:
    """An older HF save (config.json + pytorch_model.bin in HF names) is not a tue-mps file."""
    from dsflash_ros.model.convert_eomt import convert_eomt

    files, model = hf_layout_files(tmp_path, write_hf_eomt)
    directory = tmp_path / "legacy"
    directory.mkdir()
    (directory / "config.json").write_bytes(files["config.json"])
    torch.save(dict(model.state_dict()), directory / "pytorch_model.bin")
    conversion = convert_eomt(directory)
    assert conversion.extra["backbone_source"] == "huggingface-eomt"
    for key, value in model.state_dict().items():
        assert torch.equal(conversion.model.backbone.state_dict()[key], value), key
