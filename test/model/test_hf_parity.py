"""Our EoMTBackbone must reproduce Hugging Face EoMT numerically (tiny random models, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("scipy")  # HF EoMT construction needs it

from dsflash_ros.model.backbone import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from dsflash_ros.model.weights import (  # noqa: E402
    WeightsError,
    backbone_config_from_hf,
    load_hf_eomt,
)

ATOL = 1e-4
SIZE = 64
COMMON = dict(
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=2,
    image_size=SIZE,
    patch_size=16,
    num_queries=6,
    num_blocks=2,
    num_labels=5,
    layer_norm_eps=1e-5,
)


def _randomise(model: torch.nn.Module) -> None:
    """HF zero-inits biases/registers and sets LayerScale to 1: perturb all so bugs show."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def _save_hf(model: torch.nn.Module, directory: Path) -> None:
    _randomise(model)
    model.attn_mask_probs.zero_()  # annealed state: no masked attention (as released models)
    model.eval()
    model.save_pretrained(directory)


def _hf_reference(model: torch.nn.Module, pixels01: torch.Tensor):
    """HF outputs + raw residual-stream outputs of every layer (captured with hooks)."""
    raw: dict[int, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out, i=i: raw.__setitem__(i, out))
        for i, layer in enumerate(model.layers)
    ]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    try:
        with torch.no_grad():
            out = model(pixel_values=(pixels01 - mean) / std, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    return out, raw


def _check_parity(hf_model: torch.nn.Module, directory: Path) -> None:
    _save_hf(hf_model, directory)
    ours, cfg, id2label = load_hf_eomt(directory)
    assert id2label == {i: f"LABEL_{i}" for i in range(5)}
    assert not ours.training

    pixels = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    ref, raw = _hf_reference(hf_model, pixels)
    with torch.no_grad():
        got = ours(pixels)

    torch.testing.assert_close(got.class_logits, ref.class_queries_logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.mask_logits, ref.masks_queries_logits, atol=ATOL, rtol=0)
    g = SIZE // 16
    assert got.features.shape == (2, 4, 64, g, g)
    for slot, layer in enumerate(cfg.feature_layers):
        expected = raw[layer][:, -g * g :].transpose(1, 2).reshape(2, 64, g, g)
        torch.testing.assert_close(got.features[:, slot], expected, atol=ATOL, rtol=0)
        if layer < cfg.num_layers - 1:  # HF hidden_states[i+1] = raw output of block i
            hs = ref.hidden_states[layer + 1][:, -g * g :].transpose(1, 2).reshape(2, 64, g, g)
            torch.testing.assert_close(got.features[:, slot], hs, atol=ATOL, rtol=0)


def test_dinov3_parity(tmp_path: Path) -> None:
    config = transformers.EomtDinov3Config(intermediate_size=128, rope_theta=50.0, **COMMON)
    model = transformers.EomtDinov3ForUniversalSegmentation(config)
    _check_parity(model, tmp_path)
    cfg = load_hf_eomt(tmp_path)[1]
    assert (cfg.flavour, cfg.rope_theta, cfg.layer_norm_eps) == ("dinov3", 50.0, 1e-5)


def test_dinov2_parity(tmp_path: Path) -> None:
    config = transformers.EomtConfig(mlp_ratio=2, **COMMON)
    model = transformers.EomtForUniversalSegmentation(config)
    _check_parity(model, tmp_path)
    cfg = load_hf_eomt(tmp_path)[1]
    assert (cfg.flavour, cfg.intermediate_size) == ("dinov2", 128)


def test_hf_config_mapping_rejects_unsupported() -> None:
    base = transformers.EomtDinov3Config(**COMMON).to_dict()
    assert backbone_config_from_hf(base).num_labels == 5
    with pytest.raises(WeightsError, match="key_bias"):
        backbone_config_from_hf({**base, "key_bias": True})
    with pytest.raises(WeightsError, match="model_type"):
        backbone_config_from_hf({**base, "model_type": "vit"})
    with pytest.raises(WeightsError, match="square"):
        backbone_config_from_hf({**base, "image_size": [64, 96]})


def test_load_hf_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"no config\.json"):
        load_hf_eomt(tmp_path)
    config = transformers.EomtDinov3Config(intermediate_size=128, **COMMON).to_dict()
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"model\.safetensors"):
        load_hf_eomt(tmp_path)
