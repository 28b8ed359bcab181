"""`dsflash model info` and `dsflash model convert` (from a real Hugging Face EoMT model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dsflash_ros.cli import main
from dsflash_ros.labels import PSG_CLASSES
from dsflash_ros.model.checkpoint import file_id, read_checkpoint
from dsflash_ros.model.config import load_preset
from dsflash_ros.model.dsflash import DSFlash, build_model, save_model
from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DSFlash]:
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    model = build_model("tiny", seed=1)
    return save_model(path, model, {"trained_on": "synthetic", "steps": 7}), model


@pytest.fixture(scope="module")
def tiny(tiny_model: tuple[Path, DSFlash]) -> Path:
    return tiny_model[0]


def test_info_lists_model_facts(tiny: Path, capsys) -> None:
    assert main(["model", "info", str(tiny)]) == 0
    out = capsys.readouterr().out
    state, _, _ = read_checkpoint(tiny)
    backbone = sum(t.numel() for k, t in state.items() if k.startswith("backbone."))
    head = sum(t.numel() for k, t in state.items() if k.startswith("head."))
    assert "name:        dsflash-tiny" in out
    assert f"dsflash-tiny-{file_id(tiny)}" in out
    assert "320 px (patch 16, 20x20 tokens)" in out
    assert f"{backbone / 1e6:.2f} M parameters" in out
    assert f"{head / 1e6:.2f} M parameters" in out
    assert "133 (80 things, 53 stuff): person, bicycle" in out
    assert "(+125 more)" in out and PSG_CLASSES[-1] not in out  # abbreviated
    assert "56: over, in front of" in out
    assert "trained_on: synthetic" in out and "steps: 7" in out


def test_info_json_and_all(tiny_model: tuple[Path, DSFlash], capsys) -> None:
    tiny, model = tiny_model
    assert main(["model", "info", str(tiny), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["backbone"]["parameters"] == sum(p.numel() for p in model.backbone.parameters())
    assert d["head"]["parameters"] == sum(p.numel() for p in model.head.parameters())
    assert d["classes"] == list(PSG_CLASSES) and len(d["predicates"]) == 56
    assert d["provenance"] == {"trained_on": "synthetic", "steps": 7}
    assert main(["model", "info", str(tiny), "--all"]) == 0
    assert PSG_CLASSES[-1] in capsys.readouterr().out


# ----------------------------------------------------------------------------- convert


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory):
    """A random HF EoMT-DINOv3 with the tiny preset's geometry and the PSG class names."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("scipy")  # HF EoMT needs it
    b = load_preset("tiny").backbone
    config = transformers.EomtDinov3Config(
        hidden_size=b.hidden_size,
        num_hidden_layers=b.num_layers,
        num_attention_heads=b.num_heads,
        intermediate_size=b.intermediate_size,
        image_size=b.image_size,
        patch_size=b.patch_size,
        num_queries=b.num_queries,
        num_blocks=b.num_blocks,
        num_labels=len(PSG_CLASSES),
        id2label=dict(enumerate(PSG_CLASSES)),
        label2id={n: i for i, n in enumerate(PSG_CLASSES)},
        layer_norm_eps=1e-5,
    )
    model = transformers.EomtDinov3ForUniversalSegmentation(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # HF zero-inits many tensors: perturb all so a dropped one shows
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        model.attn_mask_probs.zero_()
    model.eval()
    path = tmp_path_factory.mktemp("hf") / "eomt-tiny-coco"
    model.save_pretrained(path)
    return path, model


def test_convert_with_head_loads_and_runs(hf_dir, tiny: Path, tmp_path: Path, capsys) -> None:
    path, hf_model = hf_dir
    out = tmp_path / "converted.safetensors"
    argv = ["model", "convert", "--hf-eomt", str(path), "--head", str(tiny), "--out", str(out)]
    assert main(argv) == 0
    assert "head trained" in capsys.readouterr().out

    options = PipelineOptions(
        score_threshold=0.0, overlap_threshold=0.0, relation_threshold=0.0, max_objects=4
    )
    pipeline = Pipeline.load(out, options)
    model, model_id = pipeline.model, pipeline.model_id
    _, _, extra = read_checkpoint(out)
    assert model_id.startswith("eomt-eomt-tiny-coco-")
    assert model.config.class_names == list(PSG_CLASSES)
    assert extra["head_trained"] is True and extra["head_checkpoint"] == "tiny.safetensors"
    assert extra["head_provenance"] == {"trained_on": "synthetic", "steps": 7}
    assert "/" not in json.dumps(extra)  # provenance names files, never machine paths

    # the backbone is the HF model, tensor for tensor (numerical parity: test_hf_parity.py)
    hf_state = hf_model.state_dict()
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, hf_state[name]), name
    # the head is the tiny checkpoint's, tensor for tensor
    head_state, _, _ = read_checkpoint(tiny)
    for name, tensor in model.head.state_dict().items():
        assert torch.equal(tensor, head_state[f"head.{name}"]), name

    rgb = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    result = pipeline(rgb)
    assert result.panoptic.shape == (96, 128)
    assert result.num_objects >= 1
    assert result.model_id == model_id


def test_convert_without_head_warns_untrained(hf_dir, tmp_path: Path, capsys) -> None:
    path, _ = hf_dir
    out = tmp_path / "backbone_only.safetensors"
    argv = ["model", "convert", "--hf-eomt", str(path), "--out", str(out), "--name", "mine"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "head untrained" in captured.out and "untrained (random)" in captured.err
    assert main(["model", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "name:        mine" in info
    assert "backbone_source: huggingface-eomt" in info and "head_trained: False" in info
    _, config, _ = read_checkpoint(out)
    assert config.is_thing[:80] == [True] * 80 and not any(config.is_thing[80:])
