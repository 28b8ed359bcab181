"""ONNX export + onnxruntime vs torch: backbone outputs, relation scores (dynamic pairs and
segments), and the final scene graph, for the tiny preset and a paper-sized preset (S) at
a small image size."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from dsflash_ros.model.config import load_preset
from dsflash_ros.model.dsflash import DSFlash, build_model
from dsflash_ros.model.relation_head import HeadOptions
from dsflash_ros.runtime import export as ex
from dsflash_ros.runtime.backends import BackendError, create_backend
from dsflash_ros.runtime.engine_cache import CACHE_ENV
from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions

pytest.importorskip("onnxruntime")

# permissive thresholds: random weights then still give several segments and relations
OPEN = {"score_threshold": 0.0, "overlap_threshold": 0.0, "relation_threshold": 0.0}


def small_s_model() -> DSFlash:
    """DSFlash-S (paper-sized backbone and head) at 128 px to keep the CPU test short."""
    cfg = load_preset("S")
    cfg.backbone.image_size = 128
    torch.manual_seed(0)
    return DSFlash(cfg).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread for torch and onnxruntime: the shared CI CPUs are oversubscribed,
    where spinning worker threads make both runtimes many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("dsflash-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(root))
        yield root


@pytest.fixture(scope="module", params=["tiny", "S@128"])
def exported(request: pytest.FixtureRequest, cache: Path) -> tuple[DSFlash, ex.OnnxExport]:
    model = build_model("tiny", seed=0) if request.param == "tiny" else small_s_model()
    return model, ex.cached_export(model)  # the same cache entry the backend will use


def test_graph_parity(exported: tuple[DSFlash, ex.OnnxExport]) -> None:
    model, export = exported
    reports = ex.check_onnx(model, export, num_segments=(3, 9))
    assert set(reports) == {"backbone", "head_n3", "head_n9"}
    assert all(r.ok for r in reports.values())
    # fp32 graphs agree far inside the stated tolerance
    assert reports["backbone"].max_abs_diff["features"] < 1e-3


def test_head_dynamic_pair_counts(exported: tuple[DSFlash, ex.OnnxExport]) -> None:
    """One head graph at P = 1 and at P = N(N-1) (both directions) for another N."""
    model, export = exported
    sess = ex.ort_session(export.head)
    # worker threads stop spinning when a run returns (they would take the cores of the
    # torch steps between the backbone and head sessions)
    assert sess.get_session_options().get_session_config_entry("session.force_spinning_stop") == "1"
    for n, p in ((2, 1), (7, 42)):
        inputs = ex.example_head_inputs(model, n, p, seed=n)
        with torch.inference_mode():
            want = ex.HeadGraph(model)(*inputs)
        got = sess.run(
            list(ex.HEAD_OUTPUTS), {k: v.numpy() for k, v in zip(ex.HEAD_INPUTS, inputs)}
        )
        for g, w in zip(got, want):
            assert g.shape == (p, model.config.head.num_predicates + 1)
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=1e-4)


def test_scene_graph_parity(exported: tuple[DSFlash, ex.OnnxExport]) -> None:
    """Same objects, same panoptic image, same top relations through the whole Pipeline."""
    model, _ = exported
    rng = np.random.default_rng(0)
    rgb = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    rgb[20:70, 30:90] = (200, 40, 40)  # some structure for the segments
    results, preds = {}, {}
    for backend in ("torch", "onnxruntime"):
        options = PipelineOptions(backend=backend, precision="fp32", **OPEN)
        pipe = Pipeline(model, "parity", options)
        results[backend], preds[backend] = pipe(rgb), pipe.predict(rgb)
    a, b = results["torch"], results["onnxruntime"]
    assert a.num_objects >= 2, "the test image should give at least two segments"
    np.testing.assert_array_equal(a.panoptic, b.panoptic)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    pa, pb = preds["torch"], preds["onnxruntime"]
    np.testing.assert_array_equal(pa.pairs, pb.pairs)
    np.testing.assert_allclose(pa.rel_probs, pb.rel_probs, atol=1e-4)
    top = min(10, a.num_relations)
    assert top > 0
    triplets = [
        list(zip(r.relation_subjects[:top], r.relation_objects[:top], r.relation_predicates[:top]))
        for r in (a, b)
    ]
    assert triplets[0] == triplets[1]
    np.testing.assert_allclose(a.relation_scores, b.relation_scores, atol=1e-4)


def test_backend_reuses_cache_and_keys_on_weights(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_model("tiny", seed=0)  # exported by the fixture already
    before = sorted(p.name for p in (cache / "onnx").iterdir())

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache miss: the model was exported again")

    monkeypatch.setattr(ex, "export_onnx_atomic", no_export)
    backend = create_backend("onnxruntime", model)
    assert backend.export.directory.parent == cache / "onnx"
    assert sorted(p.name for p in (cache / "onnx").iterdir()) == before
    with torch.no_grad():
        model.head.gate.bias.add_(0.1)  # other weights -> other key -> export needed
    with pytest.raises(AssertionError, match="cache miss"):
        create_backend("onnxruntime", model)


def test_fp16_export_parity(tmp_path: Path) -> None:
    """The fp16 graph (what TensorRT 11 builds from) stays close to the fp32 torch model."""
    model = build_model("tiny", seed=1)
    export = ex.export_onnx(model, tmp_path, precision="fp16")
    reports = ex.check_onnx(model, export, num_segments=(4,))
    assert all(r.ok for r in reports.values())
    assert reports["backbone"].max_abs_diff["features"] > 0  # it really is reduced precision


def test_int8_export_quantises_the_head_only(tmp_path: Path) -> None:
    """precision int8: the head's matrix products run as int8 (onnxruntime's dynamic
    quantiser), the backbone graph stays fp32, and the scores stay close to torch."""
    import onnx

    model = build_model("tiny", seed=1)
    export = ex.export_onnx(model, tmp_path, precision="int8")
    head_ops = {n.op_type for n in onnx.load(str(export.head)).graph.node}
    backbone_ops = {n.op_type for n in onnx.load(str(export.backbone)).graph.node}
    assert "DynamicQuantizeLinear" in head_ops
    assert head_ops & {"MatMulInteger", "DynamicQuantizeMatMul"}
    assert "DynamicQuantizeLinear" not in backbone_ops
    reports = ex.check_onnx(model, export, num_segments=(4,))
    assert reports["backbone"].max_abs_diff["features"] < 1e-3  # fp32, unchanged
    assert all(r.ok for r in reports.values())
    head = [r for name, r in reports.items() if name != "backbone"]
    assert max(max(r.max_abs_diff.values()) for r in head) > 0  # really quantised


def test_int8_is_refused_where_it_does_not_run() -> None:
    model = build_model("tiny", seed=0)
    with pytest.raises(BackendError, match="onnxruntime"):
        create_backend("torch", model, "cpu", "int8")
    with pytest.raises(BackendError, match=r"device=cpu|CUDA"):
        create_backend("onnxruntime", model, "cuda", "int8")


@pytest.mark.slow
def test_dynamo_exporter_head_is_dynamic(tmp_path: Path) -> None:
    """The optional dynamo exporter, on a shrunken tiny model (it takes ~1 min on tiny)."""
    small = {"image_size": 64, "hidden_size": 32, "num_layers": 4, "num_heads": 2,
             "intermediate_size": 64, "num_queries": 8, "num_blocks": 1}  # fmt: skip
    head = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "ffn_size": 64}
    model = build_model(load_preset("tiny", backbone=small, head=head), seed=2)
    export = ex.export_onnx(model, tmp_path, exporter="dynamo")
    assert all(r.ok for r in ex.check_onnx(model, export, num_segments=(3, 8)).values())


def test_bad_inputs_and_mismatch(tmp_path: Path, cache: Path) -> None:
    model = build_model("tiny", seed=0)
    with pytest.raises(ex.ExportError, match="opset"):
        ex.export_onnx(model, tmp_path, opset=11)
    with pytest.raises(ex.ExportError, match="precision"):
        ex.export_onnx(model, tmp_path, precision="int4")
    with pytest.raises(ex.ExportError, match="exporter"):
        ex.export_onnx(model, tmp_path, exporter="magic")
    with pytest.raises(ex.ExportError, match="no complete ONNX export"):
        ex.OnnxExport.read(tmp_path)
    with pytest.raises(BackendError, match="needs device=cuda"):
        create_backend("onnxruntime", model, "cpu", "fp16")
    with pytest.raises(BackendError, match="CUDA"):
        create_backend("onnxruntime", model, "cuda", "fp32")
    backend = create_backend("onnxruntime", model)  # cached by the fixture
    with pytest.raises(BackendError, match="pixels must be"):
        backend.run_backbone(torch.zeros(1, 3, 32, 32))
    with pytest.raises(BackendError, match="pruning"):
        backend.run_head(
            torch.zeros(1),
            torch.zeros(2, 4),
            torch.zeros(2, 4),
            torch.tensor([[0, 1]]),
            HeadOptions(prune=True),
        )
    other = build_model("tiny", seed=5)  # different weights than the export
    with pytest.raises(ex.ExportError, match="disagrees"):
        ex.check_onnx(other, backend.export, num_segments=(3,))


def test_export_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dsflash_ros.cli import main

    out = tmp_path / "onnx"
    argv = ["export", "onnx", "--preset", "tiny", "--image-size", "160", "--out", str(out)]
    assert main([*argv, "--check"]) == 0
    text = capsys.readouterr().out
    assert "backbone.onnx" in text and "head_n12: max |onnxruntime - torch|" in text
    export = ex.OnnxExport.read(out)
    assert export.image_size == 160 and export.opset == ex.DEFAULT_OPSET
    if importlib.util.find_spec("tensorrt") is None:
        assert main(["export", "tensorrt", "--preset", "tiny", "--out", str(tmp_path)]) == 2
        assert "needs NVIDIA TensorRT" in capsys.readouterr().err


def test_ort_head_chunking_matches_one_call(cache: Path) -> None:
    model = build_model("tiny", seed=0)  # exported by the fixture already
    backend = create_backend("onnxruntime", model)
    feats, ratios, boxes, pairs = ex.example_head_inputs(model, 6, 30, seed=3)
    whole = backend.run_head(feats, ratios, boxes, pairs)
    chunked = backend.run_head(  # 30 pairs -> 5 calls
        feats, ratios, boxes, pairs, HeadOptions(max_pairs_per_chunk=7)
    )
    for a, b in zip(whole, chunked):
        assert a.shape == (30, model.config.head.num_predicates + 1)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_pair_proposals_run_between_the_two_onnx_graphs(cache: Path) -> None:
    """pair_topk with onnxruntime: the scorer runs in torch between the backbone and head
    graphs, picks the same pairs as the torch backend, and the head graph scores them alike."""
    from dsflash_ros.bench.pipeline import test_image
    from dsflash_ros.bench.relation_head import random_segmentation

    model = build_model("tiny", seed=0)
    rgb = test_image((480, 640), 1)
    masks = random_segmentation(9, 640, torch.Generator().manual_seed(1))[:, :480].numpy()
    labels = np.arange(9) * 7
    preds = {}
    for backend in ("torch", "onnxruntime"):
        options = PipelineOptions(backend=backend, precision="fp32", pair_topk=6)
        preds[backend] = Pipeline(model, "topk", options).predict(rgb, masks, labels)
    a, b = preds["torch"], preds["onnxruntime"]
    assert a.pairs.shape == (12, 2)  # 6 of the 36 pairs, both directions
    np.testing.assert_array_equal(a.pairs, b.pairs)
    np.testing.assert_allclose(a.rel_probs, b.rel_probs, atol=1e-4)
