"""Pipeline: image in, consistent scene graph out (random tiny model, real code paths)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsflash_ros.model.config import load_preset
from dsflash_ros.model.dsflash import DSFlash, build_model, save_model
from dsflash_ros.model.preprocess import letterbox
from dsflash_ros.runtime.pipeline import ModelLoadError, Pipeline, PipelineOptions

LOW = {"score_threshold": 0.0, "overlap_threshold": 0.0, "relation_threshold": 0.0}


def micro_model(seed: int = 1) -> DSFlash:
    """The tiny preset shrunk further so that each test call takes milliseconds."""
    cfg = load_preset("tiny")
    b, h = cfg.backbone, cfg.head
    b.image_size, b.hidden_size, b.num_heads, b.intermediate_size, b.num_queries = (
        96,
        64,
        2,
        128,
        16,
    )
    h.hidden_size, h.num_heads, h.ffn_size, h.num_layers, h.classifier_hidden = 32, 2, 64, 2, 64
    model = build_model(cfg, seed=seed)
    with torch.no_grad():  # a fresh init predicts near-constant masks: give them structure
        model.backbone.mask_head.fc3.weight.mul_(40.0)
    return model


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(micro_model(), "micro", PipelineOptions(max_objects=8, **LOW))


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((90, 150, 3), np.uint8)
    img[:, :70] = (200, 40, 40)
    img[40:, 70:] = (40, 200, 90)
    return np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)


def test_result_is_self_consistent(pipeline, rgb):
    r = pipeline(rgb)
    assert r.panoptic.shape == rgb.shape[:2] and r.panoptic.dtype == np.uint16
    assert 0 < r.num_objects <= 8
    ids = set(r.object_ids.tolist())
    assert set(np.unique(r.panoptic).tolist()) <= ids | {0}
    for obj in r.objects():
        ys, xs = np.nonzero(r.panoptic == obj.id)
        assert obj.area == len(ys) > 0
        x, y, w, h = obj.bbox_xywh
        assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
        assert obj.centroid_xy == pytest.approx((xs.mean(), ys.mean()), abs=1e-3)
    assert r.num_relations > 0
    assert np.all(np.diff(r.relation_scores) <= 0)
    for rel in r.relations():
        assert rel.subject_id in ids and rel.object_id in ids and rel.subject_id != rel.object_id
    assert set(r.timings_ms) >= {"preprocess", "backbone", "postprocess", "relation", "total"}


def test_relations_are_unique_ordered_pairs_and_limits_hold(pipeline, rgb):
    pipeline.set_options(max_relations=5, relation_alternatives=2)
    try:
        r = pipeline(rgb)
    finally:
        pipeline.set_options(max_relations=100, relation_alternatives=0)
    assert r.num_relations <= 5
    pairs = list(zip(r.relation_subjects.tolist(), r.relation_objects.tolist()))
    assert len(pairs) == len(set(pairs))
    for rel in r.relations():
        assert len(rel.alternatives) == 2
        assert all(s <= rel.score for _, s in rel.alternatives)
        assert rel.predicate_id not in [p for p, _ in rel.alternatives]


def test_relation_threshold_filters(pipeline, rgb):
    all_rel = pipeline(rgb)
    cut = float(np.median(all_rel.relation_scores))
    pipeline.set_options(relation_threshold=cut)
    try:
        some = pipeline(rgb)
    finally:
        pipeline.set_options(relation_threshold=0.0)
    assert np.all(some.relation_scores >= cut)
    assert some.num_relations < all_rel.num_relations


def test_options_given_with_the_frame_win_over_the_current_ones(pipeline, rgb):
    """The node passes the options it read (for tracking) with the frame; another worker
    changing the pipeline's options meanwhile must not change what this frame used."""
    all_rel = pipeline(rgb)
    cut = float(np.median(all_rel.relation_scores))
    snapshot = pipeline.check_options(relation_threshold=cut)
    some = pipeline(rgb, snapshot)  # the pipeline's own options still say 0.0
    assert pipeline.options.relation_threshold == 0.0
    assert np.all(some.relation_scores >= cut)
    assert some.num_relations < all_rel.num_relations
    assert pipeline(rgb).num_relations == all_rel.num_relations


def test_predict_scores_every_ordered_pair(pipeline, rgb):
    frame = pipeline.predict(rgb)
    n = len(frame.labels)
    assert frame.pairs.shape == (n * (n - 1), 2)
    assert frame.rel_probs.shape == (n * (n - 1), 1 + pipeline.config.head.num_predicates)
    assert len({tuple(p) for p in frame.pairs.tolist()}) == n * (n - 1)
    assert np.all((frame.rel_probs >= 0) & (frame.rel_probs <= 1))


def test_bidirectional_and_unidirectional_cover_the_same_pairs(pipeline, rgb):
    pixels, info = letterbox(rgb, pipeline.model.image_size)
    segments, features = pipeline.segments(pixels, info, {})
    n = len(segments.masks)
    assert n >= 3
    bi = pipeline.relations(features, segments.masks)
    uni = pipeline.relations(features, segments.masks, bidirectional=False)
    assert (bi.num_passes, uni.num_passes) == (n * (n - 1) // 2, n * (n - 1))
    assert pipeline.model.head.bidirectional  # an argument, not model state
    torch.testing.assert_close(bi.pairs, uni.pairs)
    # (i, j) comes from the i<j pass in both modes, so forward-direction rows agree
    fwd = bi.pairs[:, 0] < bi.pairs[:, 1]
    torch.testing.assert_close(bi.logits[fwd], uni.logits[fwd], atol=1e-5, rtol=1e-5)


def test_two_pipelines_sharing_one_model_keep_their_own_head_options(pipeline, rgb):
    """Head switches are arguments: a pruning pipeline on the same model changes nothing for
    the other one (they are not attributes of the shared nn.Module)."""
    before = pipeline.predict(rgb)
    switched = PipelineOptions(max_objects=8, prune=True, tome_ratio=0.5, **LOW)
    pruned = Pipeline(pipeline.model, "same-model", switched)
    pruned.predict(rgb)
    after = pipeline.predict(rgb)
    np.testing.assert_array_equal(before.rel_probs, after.rel_probs)
    assert not np.allclose(pruned.predict(rgb).rel_probs, before.rel_probs)


def test_predcls_uses_the_given_segments(pipeline, rgb):
    masks = np.zeros((3, *rgb.shape[:2]), bool)
    masks[0, :, :70] = True
    masks[1, 40:, 70:] = True
    masks[2, :40, 70:] = True
    frame = pipeline.predict(rgb, masks=masks, labels=np.array([5, 7, 9]))
    assert frame.labels.tolist() == [5, 7, 9]
    assert frame.pairs.shape == (6, 2)
    np.testing.assert_array_equal(frame.id_map, (masks * np.arange(1, 4)[:, None, None]).sum(0))


def test_no_objects_gives_an_empty_graph(rgb):
    p = Pipeline(micro_model(), "micro", PipelineOptions(score_threshold=1.0))
    r = p(rgb)
    assert r.num_objects == 0 and r.num_relations == 0 and not r.panoptic.any()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"max_objects": -1}, "max_objects"),
        ({"tome_ratio": 1.0}, "tome_ratio"),
        ({"device": "cuda"}, "cannot change"),
        ({"colour": "red"}, "unknown pipeline option"),
        # capped by the loaded model's predicates (56 in the tiny preset), not a fixed 55
        ({"relation_alternatives": 56}, r"\[0, 55\] for this model \(56 predicates\)"),
    ],
)
def test_bad_options_are_rejected_and_old_values_kept(pipeline, changes, message):
    before = pipeline.options
    with pytest.raises(ValueError, match=message):
        pipeline.set_options(**changes)
    assert pipeline.options == before


def test_load_round_trip_and_errors(tmp_path, rgb):
    path = save_model(tmp_path / "m.safetensors", micro_model(3))
    p = Pipeline.load(path, PipelineOptions(**LOW))
    assert p.model_id.startswith("dsflash-tiny-")
    assert p(rgb).num_objects > 0
    with pytest.raises(ModelLoadError, match="not found"):
        Pipeline.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match=r"bad\.safetensors"):
        Pipeline.load(bad)


def test_per_pair_mask_embedding_gives_the_same_scores(pipeline, rgb):
    """Supplement Alg. 1 (per-pair pooling) and Alg. 2 (pool once, gather) agree end to end."""
    shared = pipeline.predict(rgb)
    pipeline.set_options(mask_embedding="per_pair")
    try:
        per_pair = pipeline.predict(rgb)
    finally:
        pipeline.set_options(mask_embedding="shared")
    np.testing.assert_array_equal(shared.pairs, per_pair.pairs)
    np.testing.assert_allclose(shared.rel_probs, per_pair.rel_probs, atol=1e-5)


def test_options_a_backend_cannot_honour_are_refused():
    with pytest.raises(ValueError, match="backend torch"):
        PipelineOptions(backend="onnxruntime", prune=True).validate()
    with pytest.raises(ValueError, match="backend torch"):
        PipelineOptions(backend="tensorrt", tome_ratio=0.3).validate()
    with pytest.raises(ValueError, match="backend torch"):
        PipelineOptions(backend="onnxruntime", mask_embedding="per_pair").validate()


def test_segments_that_vanish_at_the_original_size_are_dropped_and_ids_renumbered():
    from dsflash_ros.model.panoptic import PanopticSegments
    from dsflash_ros.model.preprocess import letterbox_geometry
    from dsflash_ros.runtime.pipeline import visible_segments

    info = letterbox_geometry((24, 24), 96)  # 4 model pixels per original pixel
    masks = torch.zeros((3, 96, 96), dtype=torch.bool)
    masks[0, :48] = True  # top half
    masks[1, 49, 1] = True  # one model pixel: falls between original pixel centres
    masks[2, 48:] = True
    masks[2, 49, 1] = False
    seg = PanopticSegments(masks, torch.tensor([4, 5, 6]), torch.tensor([0.9, 0.8, 0.7]))
    kept, id_map = visible_segments(seg, info)
    assert kept.labels.tolist() == [4, 6]
    assert id_map.shape == (24, 24)
    assert set(torch.unique(id_map).tolist()) == {1, 2}
    assert bool((id_map[:12] == 1).all()) and bool((id_map[12:] == 2).all())


def test_pair_topk_limits_the_pairs_the_head_scores():
    """A 640x480 frame with 8 given segments: pair_topk K sends K of the 28 pairs through
    the head (both directions reported), K >= 28 is the full path exactly, and a model
    without a proposal scorer refuses K > 0 with the reason."""
    from dsflash_ros.bench.pipeline import test_image
    from dsflash_ros.bench.relation_head import random_segmentation

    rgb = test_image((480, 640), 0)
    masks = random_segmentation(8, 640, torch.Generator().manual_seed(0))[:, :480].numpy()
    labels = np.arange(8)
    pipe = Pipeline(micro_model(), "micro", PipelineOptions(precision="fp32", **LOW))
    assert pipe.options.pair_topk == -1 and pipe.pair_topk() == 32  # auto, with a scorer
    pipe.set_options(pair_topk=0)
    full = pipe.predict(rgb, masks, labels)
    pipe.set_options(pair_topk=28)
    same = pipe.predict(rgb, masks, labels)
    np.testing.assert_array_equal(same.pairs, full.pairs)
    np.testing.assert_array_equal(same.rel_probs, full.rel_probs)
    pipe.set_options(pair_topk=5)
    few = pipe.predict(rgb, masks, labels)
    assert few.pairs.shape == (10, 2)
    rows = [full.pairs.tolist().index(p) for p in few.pairs.tolist()]
    np.testing.assert_allclose(few.rel_probs, full.rel_probs[rows], atol=1e-6)
    result = pipe(rgb)  # SGDet: the pipeline's own segments
    assert result.num_relations <= 10

    cfg = load_preset("tiny")
    cfg.head.proposal_hidden = 0
    plain = build_model(cfg, seed=0)
    assert plain.head.proposal is None
    with pytest.raises(ValueError, match="needs a model with a pair-proposal scorer"):
        Pipeline(plain, "plain", PipelineOptions(pair_topk=8))
    pipe = Pipeline(plain, "plain", PipelineOptions(precision="fp32", **LOW))
    assert pipe.pair_topk() == 0  # auto without a scorer: every pair
    np.testing.assert_array_equal(pipe.predict(rgb, masks, labels).pairs, full.pairs)
    with pytest.raises(ValueError, match="dsflash train proposals"):
        pipe.set_options(pair_topk=8)
    assert pipe.options.pair_topk == -1
