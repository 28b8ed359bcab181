"""EoMTBackbone: shapes, query injection, feature taps, input checks, exportability, sizes."""

from __future__ import annotations

import pytest
import torch

from dsflash_ros.model.backbone import BackboneOutput, EoMTBackbone, count_parameters
from dsflash_ros.model.config import ConfigError, load_preset

from ..conftest import micro_backbone_config


def test_tiny_preset_shapes() -> None:
    cfg = load_preset("tiny").backbone
    model = EoMTBackbone(cfg).eval()
    s, g = cfg.image_size, cfg.grid_size
    with torch.no_grad():
        out = model(torch.rand(1, 3, s, s))
    assert isinstance(out, BackboneOutput)
    assert out.class_logits.shape == (1, cfg.num_queries, cfg.num_labels + 1)
    assert out.mask_logits.shape == (1, cfg.num_queries, s // 4, s // 4)
    assert out.features.shape == (1, 4, cfg.hidden_size, g, g)
    assert all(torch.isfinite(t).all() for t in out)


def test_features_are_raw_block_outputs(micro_backbone: EoMTBackbone) -> None:
    captured: dict[int, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda _m, _i, o, i=i: captured.__setitem__(i, o))
        for i, layer in enumerate(micro_backbone.layers)
    ]
    try:
        with torch.no_grad():
            out = micro_backbone(torch.rand(2, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
    # micro_backbone has 4 blocks -> feature layers (0, 1, 2, 3); queries join before block 2
    assert micro_backbone.cfg.feature_layers == (0, 1, 2, 3)
    assert captured[1].shape[1] == 5 + 16  # prefix + patches
    assert captured[2].shape[1] == 5 + 5 + 16  # queries + prefix + patches
    for slot, layer in enumerate(micro_backbone.cfg.feature_layers):
        expected = captured[layer][:, -16:].transpose(1, 2).reshape(2, 32, 4, 4)
        torch.testing.assert_close(out.features[:, slot], expected)


def test_queries_only_influence_the_last_blocks(micro_backbone: EoMTBackbone) -> None:
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = micro_backbone(x)
        saved = micro_backbone.query.weight.clone()
        # a random change (a constant shift would be LN-invariant)
        micro_backbone.query.weight.add_(torch.randn_like(saved))
        after = micro_backbone(x)
        micro_backbone.query.weight.copy_(saved)
    # blocks 0, 1 run before query injection; blocks 2, 3 attend to the queries
    torch.testing.assert_close(before.features[:, :2], after.features[:, :2])
    assert not torch.allclose(before.features[:, 2:], after.features[:, 2:])
    assert not torch.allclose(before.class_logits, after.class_logits)


def test_batch_items_are_independent(micro_backbone: EoMTBackbone) -> None:
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        both = micro_backbone(x)
        second = micro_backbone(x[1:])
    for a, b in zip(both, second):
        torch.testing.assert_close(a[1:], b, atol=1e-5, rtol=1e-4)


def test_normalisation_is_inside_the_model(micro_backbone: EoMTBackbone) -> None:
    # a mid-grey image equals the ImageNet mean only after internal normalisation: feeding the
    # same tensor twice must give the same result, and [0,1] vs [0,255] inputs must differ
    x = torch.full((1, 3, 64, 64), 0.5)
    with torch.no_grad():
        a = micro_backbone(x).class_logits
        b = micro_backbone(x * 255).class_logits
    assert not torch.allclose(a, b)


def test_dinov2_flavour_and_gated_mlp() -> None:
    for cfg in (
        micro_backbone_config(flavour="dinov2"),
        micro_backbone_config(use_gated_mlp=True, hidden_act="silu"),
    ):
        model = EoMTBackbone(cfg).eval()
        with torch.no_grad():
            out = model(torch.rand(1, 3, 64, 64))
        assert out.mask_logits.shape == (1, 5, 16, 16)
    keys = EoMTBackbone(micro_backbone_config(flavour="dinov2")).state_dict()
    assert "embeddings.position_embeddings.weight" in keys
    assert "layers.0.attention.out_proj.weight" in keys
    assert "layers.0.mlp.fc1.weight" in keys
    keys3 = EoMTBackbone(micro_backbone_config()).state_dict()
    assert "layers.0.attention.o_proj.weight" in keys3
    assert "layers.0.attention.k_proj.bias" not in keys3  # DINOv3: no key bias
    assert "layers.0.mlp.up_proj.weight" in keys3


@pytest.mark.parametrize(
    "shape",
    [(3, 64, 64), (1, 3, 32, 32), (1, 1, 64, 64), (1, 3, 64, 48)],
)
def test_rejects_bad_input_shapes(micro_backbone: EoMTBackbone, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="pixel_values"):
        micro_backbone(torch.rand(shape))


def test_rejects_integer_input(micro_backbone: EoMTBackbone) -> None:
    with pytest.raises(ValueError, match="float"):
        micro_backbone(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize(
    "overrides",
    [
        {"flavour": "vit"},
        {"patch_size": 12, "image_size": 60},
        {"hidden_act": "mish"},
        {"hidden_size": 24, "num_heads": 4},  # head dim 6: not divisible by 4 for RoPE
    ],
)
def test_rejects_bad_configs(overrides: dict) -> None:
    with pytest.raises(ConfigError):
        EoMTBackbone(micro_backbone_config(**overrides))


def test_exports_without_data_dependent_branches(micro_backbone: EoMTBackbone) -> None:
    """torch.export (the dynamo ONNX exporter's front end) with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(
        micro_backbone, (torch.rand(2, 3, 64, 64),), dynamic_shapes={"pixel_values": {0: batch}}
    )
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(program.module()(x), micro_backbone(x)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("preset", "low", "high"),
    [("S", 22.5e6, 24.5e6), ("B", 90e6, 95e6), ("L", 305e6, 320e6)],
)
def test_preset_parameter_counts(preset: str, low: float, high: float) -> None:
    # built on the meta device: no memory, no init cost; EoMT reference ~23.4 M / 92.5 M / 315 M
    with torch.device("meta"):
        model = EoMTBackbone(load_preset(preset).backbone)
    assert low < count_parameters(model) < high
