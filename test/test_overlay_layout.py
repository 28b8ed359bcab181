"""Overlay pictures a person can read, measured on real-size synthetic scenes (640x480 and
1280x720, ground-truth segments and relations): no two labels overlap, every object label
sits on its own object (also for fragmented objects), text grows with the image."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dsflash_ros.data.synth import render_scene
from dsflash_ros.data.synth_vocab import (
    NUM_THINGS,
    SYNTH_PREDICATES,
    SYNTH_STUFF_CLASSES,
    SYNTH_THING_CLASSES,
)
from dsflash_ros.runtime.result import SceneGraphResult
from dsflash_ros.visualize import OverlayStyle, draw_overlay, label_spots, layout_overlay


def scene_result(index: int, hw: tuple[int, int], speckle: float = 0.0):
    """Image and a SceneGraphResult of synthetic scene ``index`` (seed 3); ``speckle``
    reassigns that share of pixels at random, like a noisy segmenter."""
    scene = render_scene(3, index, hw)
    seg = scene.seg.copy()
    rng = np.random.default_rng(index)
    n = len(scene.labels)
    if speckle:
        noisy = rng.random(seg.shape) < speckle
        seg[noisy] = rng.integers(-1, n, int(noisy.sum()))
    pan = np.where(seg >= 0, seg + 1, 0).astype(np.uint16)
    ids = np.array([i + 1 for i in range(n) if (pan == i + 1).any()], np.uint16)
    boxes, centroids = [], []
    for i in ids:
        ys, xs = np.nonzero(pan == i)
        boxes.append([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
        centroids.append([xs.mean(), ys.mean()])
    rel = scene.relations
    rel = rel[np.isin(rel[:, 0] + 1, ids) & np.isin(rel[:, 1] + 1, ids)]
    result = SceneGraphResult(
        panoptic=pan,
        object_ids=ids,
        class_ids=scene.labels[ids - 1].astype(np.int64),
        scores=rng.uniform(0.5, 1.0, len(ids)).astype(np.float32),
        boxes_xywh=np.array(boxes, np.int64).reshape(-1, 4),
        areas=np.array([(pan == i).sum() for i in ids], np.int64),
        centroids=np.array(centroids, np.float32).reshape(-1, 2),
        relation_subjects=(rel[:, 0] + 1).astype(np.uint16),
        relation_objects=(rel[:, 1] + 1).astype(np.uint16),
        relation_predicates=rel[:, 2].astype(np.int64),
        relation_scores=np.sort(rng.random(len(rel)))[::-1].astype(np.float32),
        class_names=list(SYNTH_THING_CLASSES) + list(SYNTH_STUFF_CLASSES),
        is_thing_table=[True] * NUM_THINGS + [False] * len(SYNTH_STUFF_CLASSES),
        predicate_names=list(SYNTH_PREDICATES),
    )
    return scene.image, result


def overlap_area(a, b) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)


@pytest.mark.parametrize("speckle", [0.0, 0.02])
def test_640x480_with_many_objects_no_labels_overlap_and_each_sits_on_its_object(speckle):
    image, result = scene_result(0, (480, 640), speckle)
    assert result.num_objects >= 10 and result.num_relations >= 10
    layout = layout_overlay(result, max_relations=10)
    boxes = layout.label_boxes()
    overlaps = [overlap_area(a, b) for a, b in itertools.combinations(boxes, 2)]
    assert sum(overlaps) == 0, f"{sum(o > 0 for o in overlaps)} overlapping label pairs"
    objects = [lab for lab in layout.labels if lab.kind == "object"]
    assert len(objects) == result.num_objects and layout.hidden_objects == 0
    for lab in objects:
        x0, y0, x1, y1 = lab.box
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
        cx, cy = (x0 + x1 - 1) // 2, (y0 + y1 - 1) // 2
        assert result.panoptic[cy, cx] == lab.object_id, lab.text
    relations = [lab for lab in layout.labels if lab.kind == "relation"]
    assert len(relations) == len(layout.arrows) >= 6
    assert len(relations) + layout.hidden_relations == 10
    notes = [lab for lab in layout.labels if lab.kind == "note"]
    assert len(notes) == (1 if layout.hidden_relations else 0)
    if notes:
        assert notes[0].text.startswith(f"{layout.hidden_relations} relation")
    # the picture has the layout: each object label box is drawn dark, each relation light
    out = draw_overlay(image, result)
    for lab in layout.labels:
        x0, y0, x1, y1 = lab.box
        patch = out[y0:y1, x0:x1].mean()
        assert patch > 150 if lab.kind == "relation" else patch < 110, lab


def test_a_fragmented_object_is_labelled_on_its_largest_part_not_its_centroid():
    pan = np.zeros((480, 640), np.uint16)
    pan[:, :] = 1  # wall
    pan[100:400, 250:390] = 2  # a cabinet between the two panels of a curtain
    pan[50:450, 60:200] = 3  # large curtain panel
    pan[100:400, 450:560] = 3  # smaller panel: the centroid falls on the cabinet
    ys, xs = np.nonzero(pan == 3)
    assert pan[int(ys.mean()), int(xs.mean())] == 2
    spots = label_spots(pan, 3)
    x, y = spots[0]
    assert 60 <= x < 200 and 50 <= y < 450  # in the large panel, far from its edges
    assert abs(x - 129.5) <= 2 and abs(y - 249.5) <= 2
    assert all(pan[sy, sx] == 3 for sx, sy in spots)


def test_text_and_lines_grow_with_the_image_with_a_readable_minimum():
    small, vga, hd = (OverlayStyle.for_image(*hw) for hw in ((120, 160), (480, 640), (720, 1280)))
    assert small.font_scale == pytest.approx(0.45)  # the minimum
    assert vga.font_scale == pytest.approx(0.5) and hd.font_scale == pytest.approx(0.75)
    assert hd.text_thickness > vga.text_thickness
    assert 1 <= vga.line_width <= hd.line_width and 1 <= vga.outline_width <= hd.outline_width


def test_1280x720_labels_do_not_overlap():
    for index in range(3):
        _, result = scene_result(index, (720, 1280), speckle=0.01)
        boxes = layout_overlay(result).label_boxes()
        assert all(overlap_area(a, b) == 0 for a, b in itertools.combinations(boxes, 2))


def test_object_tags_go_into_the_labels():
    image, result = scene_result(0, (480, 640))
    tags = {int(i): f"T{k + 1}" for k, i in enumerate(result.object_ids)}
    layout = layout_overlay(result, object_tags=tags)
    objects = [lab for lab in layout.labels if lab.kind == "object"]
    assert objects and all(f" {tags[lab.object_id]}" in lab.text for lab in objects)
    boxes = layout.label_boxes()
    assert all(overlap_area(a, b) == 0 for a, b in itertools.combinations(boxes, 2))
    assert draw_overlay(image, result, object_tags=tags).shape == image.shape
