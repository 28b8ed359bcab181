"""Overlay drawing (ROS-free) and the rviz markers built from a hand-made scene graph."""

from __future__ import annotations

import numpy as np
import pytest

from dsflash_ros.runtime.result import SceneGraphResult
from dsflash_ros.visualize import class_color, colorize_panoptic, draw_overlay, layout_overlay

H, W = 120, 160


def _result(with_objects: bool = True) -> SceneGraphResult:
    """Two boxes side by side (ids 1 and 2) and one relation 1 -> 2."""
    pan = np.zeros((H, W), np.uint16)
    if with_objects:
        pan[20:100, 10:60] = 1
        pan[30:90, 100:150] = 2
    ids = np.array([1, 2] if with_objects else [], np.uint16)
    n = len(ids)
    areas = np.array([(pan == i).sum() for i in ids], np.int64)
    cents = np.array(
        [[np.nonzero(pan == i)[1].mean(), np.nonzero(pan == i)[0].mean()] for i in ids], np.float32
    ).reshape(-1, 2)
    rel = np.array([1] if with_objects else [], np.uint16)
    return SceneGraphResult(
        panoptic=pan,
        object_ids=ids,
        class_ids=np.array([3, 7][:n], np.int64),
        scores=np.array([0.9, 0.8][:n], np.float32),
        boxes_xywh=np.array([[10, 20, 50, 80], [100, 30, 50, 60]][:n], np.int64).reshape(-1, 4),
        areas=areas,
        centroids=cents,
        relation_subjects=rel,
        relation_objects=rel + 1,
        relation_predicates=np.array([0] if with_objects else [], np.int64),
        relation_scores=np.array([0.7] if with_objects else [], np.float32),
        class_names=[f"class{i}" for i in range(10)],
        is_thing_table=[True] * 10,
        predicate_names=["on", "near"],
    )


def _grey() -> np.ndarray:
    return np.full((H, W, 3), 128, np.uint8)


def test_overlay_shape_dtype_and_input_untouched():
    rgb = _grey()
    out = draw_overlay(rgb, _result())
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (rgb == 128).all()  # input not modified


def _outside_labels(res: SceneGraphResult, max_relations: int = 10) -> np.ndarray:
    """(H, W) bool: pixels under no label box of the overlay's layout."""
    free = np.ones((H, W), bool)
    for x0, y0, x1, y1 in layout_overlay(res, max_relations).label_boxes():
        free[y0:y1, x0:x1] = False
    return free


def test_segment_pixels_are_tinted_toward_their_class_colour():
    rgb = _grey()
    res = _result()
    out = draw_overlay(rgb, res, alpha=0.5).astype(int)
    free = _outside_labels(res)
    for oid, cid in ((1, 3), (2, 7)):
        # inside the object, away from its outline and from every label
        inner = np.zeros((H, W), bool)
        ys, xs = np.nonzero(res.panoptic == oid)
        inner[ys.min() + 3 : ys.max() - 2, xs.min() + 3 : xs.max() - 2] = True
        region = inner & free
        assert region.sum() > 100
        colour = np.array(class_color(cid))
        before = np.abs(rgb[region].astype(int) - colour).sum(-1).mean()
        after = np.abs(out[region] - colour).sum(-1).mean()
        assert after < 0.6 * before
    # background far from segments and arrows keeps its colour
    assert (out[2:10, 70:90] == 128).all()


def test_relation_arrow_is_drawn_between_the_objects():
    res = _result()
    with_rel = draw_overlay(_grey(), res)
    layout = layout_overlay(res)
    assert len(layout.arrows) == 1 and layout.hidden_relations == 0
    (arrow,) = layout.arrows
    assert res.panoptic[arrow.start[1], arrow.start[0]] in (0, 1)  # leaves the subject...
    assert arrow.end[0] > arrow.start[0]  # ...towards the object on the right
    free = _outside_labels(res)
    res.relation_scores = res.relation_scores[:0]
    res.relation_subjects = res.relation_subjects[:0]
    res.relation_objects = res.relation_objects[:0]
    res.relation_predicates = res.relation_predicates[:0]
    without = draw_overlay(_grey(), res)
    # the gap between the two boxes (x 60..100) is crossed by the arrow only
    gap = np.zeros((H, W), bool)
    gap[10:110, 63:97] = True
    assert (with_rel[gap & free] != without[gap & free]).any()
    assert (without[gap & _outside_labels(res)] == 128).all()
    no_arrows = draw_overlay(_grey(), _result(), max_relations=0)
    assert (no_arrows[gap & _outside_labels(_result(), 0)] == 128).all()


def test_empty_result_leaves_image_unchanged():
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    np.testing.assert_array_equal(draw_overlay(rgb, _result(with_objects=False)), rgb)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="RGB"):
        draw_overlay(np.zeros((H, W), np.uint8), _result())
    with pytest.raises(ValueError, match="image is"):
        draw_overlay(np.zeros((H + 1, W, 3), np.uint8), _result())


def test_tiny_images_draw_without_error():
    res = _result()
    small = SceneGraphResult(
        **{**res.__dict__, "panoptic": np.ones((1, 1), np.uint16), "centroids": np.zeros((2, 2))}
    )
    assert draw_overlay(np.zeros((1, 1, 3), np.uint8), small).shape == (1, 1, 3)


def test_colours_are_stable_and_distinct():
    assert class_color(5) == class_color(5)
    assert len({class_color(i) for i in range(133)}) == 133
    pan = _result().panoptic
    col = colorize_panoptic(pan)
    assert col.shape == (H, W, 3) and col.dtype == np.uint8
    assert (col[pan == 0] == 0).all()
    assert len({tuple(col[pan == i][0]) for i in (1, 2)}) == 2


def test_markers_start_with_deleteall_in_the_image_frame():
    pytest.importorskip("rclpy", reason="rclpy not installed")
    pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from dsflash_ros.ros.markers import PLANE_DISTANCE_M, scene_graph_markers

    header = Header(frame_id="cam_optical")
    header.stamp.sec = 42
    arr = scene_graph_markers(_result(), header, scale=0.01)
    assert arr.markers[0].action == Marker.DELETEALL
    assert all(m.header == header for m in arr.markers)
    kinds = [(m.ns, m.type) for m in arr.markers[1:]]
    assert kinds.count(("objects", Marker.SPHERE)) == 2
    assert kinds.count(("labels", Marker.TEXT_VIEW_FACING)) == 2
    assert kinds.count(("relations", Marker.ARROW)) == 1
    (arrow,) = [m for m in arr.markers if m.ns == "relations"]
    a, b = arrow.points
    # subject (left box) is left of the object (right box); the plane is 1 m ahead
    assert a.x < 0 < b.x and a.z == b.z == PLANE_DISTANCE_M
    labels = [m.text for m in arr.markers if m.ns == "labels"]
    assert labels[0].startswith("class3#1") and any(m.text.startswith("on ") for m in arr.markers)
    empty = scene_graph_markers(_result(with_objects=False), header)
    assert [m.action for m in empty.markers] == [Marker.DELETEALL]
