"""Checkpoint save/read/load round trip, every error case, content ids, tue-mps conversion."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dsflash_ros.model.backbone import EoMTBackbone
from dsflash_ros.model.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    file_id,
    load_weights,
    model_id,
    read_checkpoint,
    save_checkpoint,
)
from dsflash_ros.model.config import ModelConfig, load_preset
from dsflash_ros.model.files import METADATA_KEY, default_model_path, safetensors_metadata
from dsflash_ros.model.weights import WeightsError, convert_tue_mps_state_dict

from ..conftest import micro_backbone_config


@pytest.fixture(scope="module")
def config() -> ModelConfig:
    backbone = micro_backbone_config(
        image_size=32, hidden_size=16, intermediate_size=32, num_queries=3, num_blocks=1
    )
    return load_preset("tiny", backbone={**backbone.__dict__, "num_labels": 133})


@pytest.fixture(scope="module")
def model(config: ModelConfig) -> EoMTBackbone:
    torch.manual_seed(0)
    return EoMTBackbone(config.backbone)


def test_round_trip(tmp_path: Path, config: ModelConfig, model: EoMTBackbone) -> None:
    path = save_checkpoint(tmp_path / "sub" / "m.safetensors", model, config, {"epoch": 3})
    state, cfg, extra = read_checkpoint(path)
    assert cfg.to_dict() == config.to_dict()
    assert extra == {"epoch": 3}
    fresh = EoMTBackbone(cfg.backbone)
    load_weights(fresh, state)
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    assert not list(tmp_path.glob("sub/*.tmp"))  # atomic write leaves no temp file


def test_shared_tensors_are_saved(tmp_path: Path, config: ModelConfig) -> None:
    tied = nn.Module()
    tied.a = nn.Linear(2, 2)
    tied.b = nn.Linear(2, 2)
    tied.b.weight = tied.a.weight  # aliased parameter (e.g. weight tying)
    state, _, _ = read_checkpoint(save_checkpoint(tmp_path / "t.safetensors", tied, config))
    assert torch.equal(state["a.weight"], state["b.weight"])


def test_mismatch_names_keys_and_shapes(config: ModelConfig, model: EoMTBackbone) -> None:
    state = dict(model.state_dict())
    state.pop("query.weight")
    state["bogus.weight"] = torch.zeros(1)
    state["class_predictor.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointMismatchError) as err:
        load_weights(EoMTBackbone(config.backbone), state)
    message = str(err.value)
    assert "query.weight" in message and "bogus.weight" in message
    assert "class_predictor.bias: expected [134], found [7]" in message
    assert isinstance(err.value, ValueError)
    assert err.value.missing == ["query.weight"] and err.value.unexpected == ["bogus.weight"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="not found"):
        read_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="not a file"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello world, not safetensors", b"\xff" * 64])
def test_corrupt_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="safetensors"):
        read_checkpoint(path)


def test_truncated_file(tmp_path: Path, config: ModelConfig, model: EoMTBackbone) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", model, config)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_file_without_config_and_sidecar(tmp_path: Path, config: ModelConfig) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no dsflash model config"):
        read_checkpoint(path)
    config.to_yaml(path.with_suffix(".yaml"))
    state, cfg, extra = read_checkpoint(path)
    assert cfg.to_dict() == config.to_dict() and extra == {} and set(state) == {"w"}


def test_invalid_config_in_header(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"dsflash": '{"config": {"bogus": 1}}'})
    with pytest.raises(CheckpointError, match="invalid model config"):
        read_checkpoint(path)


def test_old_configs_with_post_processing_thresholds_still_load(
    tmp_path: Path, config: ModelConfig, model: EoMTBackbone
) -> None:
    """Checkpoints that stored the post-processing thresholds as a ``panoptic`` entry (the
    embedded model among them) load with the entry dropped: the pipeline options set them."""
    data = config.to_dict()
    assert "panoptic" not in data
    old = {"score_threshold": 0.8, "overlap_threshold": 0.8, "mask_threshold": 0.5}
    assert ModelConfig.from_dict({**data, "panoptic": old}).to_dict() == data
    path = save_checkpoint(tmp_path / "old.safetensors", model, config)
    header = json.loads(safetensors_metadata(path)[METADATA_KEY])
    header["config"]["panoptic"] = {**old, "max_segments": 0}
    save_file(load_file(str(path)), str(path), {METADATA_KEY: json.dumps(header)})
    _, cfg, _ = read_checkpoint(path)
    assert cfg.to_dict() == data
    embedded = default_model_path()
    if embedded.is_file():  # the shipped model, whichever code version wrote it
        _, cfg, _ = read_checkpoint(embedded)
        assert "panoptic" not in cfg.to_dict()


def test_extra_metadata_must_be_json(tmp_path: Path, config, model) -> None:
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "m.safetensors", model, config, {"x": object()})


def test_ids_track_content(tmp_path: Path, config: ModelConfig, model: EoMTBackbone) -> None:
    state = model.state_dict()
    ident = model_id(config, state)
    assert re.fullmatch(r"[0-9a-f]{12}", ident)
    assert model_id(config, dict(reversed(list(state.items())))) == ident  # order-free
    changed = dict(state)
    changed["query.weight"] = state["query.weight"] + 1e-3
    assert model_id(config, changed) != ident
    other = ModelConfig.from_dict({**config.to_dict(), "name": "other"})
    assert model_id(other, state) != ident

    a = save_checkpoint(tmp_path / "a.safetensors", model, config)
    b = save_checkpoint(tmp_path / "b.safetensors", model, config)
    assert file_id(a) == file_id(b)
    c = save_checkpoint(tmp_path / "c.safetensors", model, config, {"note": "x"})
    assert file_id(c) != file_id(a)
    with pytest.raises(CheckpointNotFoundError):
        file_id(tmp_path / "missing")


# --------------------------------------------------------------------------- tue-mps layout


# our name -> original tue-mps name, written independently of the converter's table
_INVERSE = (
    (r"^embeddings\.(cls_token|register_tokens)$", r"network.encoder.backbone.patch_embed.\1"),
    (r"^embeddings\.patch_embeddings\.", "network.encoder.backbone.patch_embed.patch_embeddings."),
    (r"^layers\.(\d+)\.", r"network.encoder.backbone.blocks.\1."),
    (r"^layernorm\.", "network.encoder.backbone.norm."),
    (r"^query\.", "network.q."),
    (r"^class_predictor\.", "network.class_head."),
    (r"^mask_head\.fc1\.", "network.mask_head.0."),
    (r"^mask_head\.fc2\.", "network.mask_head.2."),
    (r"^mask_head\.fc3\.", "network.mask_head.4."),
    (r"^upscale_block\.block\.(\d+)\.layernorm2d\.", r"network.upscale.\1.norm."),
    (r"^upscale_block\.block\.(\d+)\.", r"network.upscale.\1."),
)


def _to_tue_mps(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, original in _INVERSE:
            new, n = re.subn(pattern, original, key)
            if n:
                out[new] = value
                break
        else:
            raise AssertionError(f"no inverse rule for {key}")
    return out


def test_tue_mps_round_trip(model: EoMTBackbone) -> None:
    ours = model.state_dict()
    original = _to_tue_mps(ours)
    assert "network.encoder.backbone.blocks.0.attention.q_proj.weight" in original
    assert "network.mask_head.4.weight" in original
    assert "network.upscale.1.norm.weight" in original
    original["network.encoder.pixel_mean"] = torch.zeros(1, 3, 1, 1)
    original["network.attn_mask_probs"] = torch.zeros(1)
    converted = convert_tue_mps_state_dict({"state_dict": original})
    assert set(converted) == set(ours)
    for key, value in ours.items():
        assert converted[key] is value


def test_tue_mps_deltas_add_to_the_dinov3_base(model: EoMTBackbone) -> None:
    ours = model.state_dict()
    delta = _to_tue_mps({k: torch.full_like(v, 0.5) for k, v in ours.items()})
    # a DINOv3ViTModel state dict in HF names (layer.N., norm.) incl. the unused mask token
    base = {}
    for key, value in ours.items():
        if key.startswith(("layers.", "layernorm.", "embeddings.")):
            hf = re.sub(r"^layers\.", "layer.", key)
            base[re.sub(r"^layernorm\.", "norm.", hf)] = value
    base["embeddings.mask_token"] = torch.zeros(1, 1, 16)
    merged = convert_tue_mps_state_dict(delta, base_state_dict=base)
    load_weights(EoMTBackbone(model.cfg), merged)  # complete and well-shaped
    assert torch.equal(
        merged["layers.1.mlp.up_proj.weight"], ours["layers.1.mlp.up_proj.weight"] + 0.5
    )
    assert torch.equal(merged["layernorm.bias"], ours["layernorm.bias"] + 0.5)
    assert torch.equal(merged["embeddings.cls_token"], ours["embeddings.cls_token"] + 0.5)
    # head tensors are absolute, not deltas
    assert torch.equal(merged["query.weight"], torch.full_like(ours["query.weight"], 0.5))
    assert torch.equal(
        merged["mask_head.fc2.bias"], torch.full_like(ours["mask_head.fc2.bias"], 0.5)
    )


def test_tue_mps_errors(model: EoMTBackbone) -> None:
    with pytest.raises(WeightsError, match="not in the tue-mps"):
        convert_tue_mps_state_dict({"model.blocks.0.weight": torch.zeros(1)})
    delta = _to_tue_mps(model.state_dict())
    with pytest.raises(WeightsError, match="no counterpart"):
        convert_tue_mps_state_dict(delta, base_state_dict={})
