"""Objects in 3D from analytic depth: planes at known distances seen through a known K."""

from __future__ import annotations

import numpy as np
import pytest

from dsflash_ros.runtime.geometry3d import (
    DepthError,
    Intrinsics,
    depth_in_metres,
    object_geometry,
)

H, W = 480, 640
K = Intrinsics(fx=525.0, fy=520.0, cx=319.5, cy=239.5, width=W, height=H)


def scene() -> tuple[np.ndarray, np.ndarray]:
    """Id image: 1 = background, 2 and 3 = rectangles; depth (metres, float64): a wall at
    4 m, rectangle 2 a board at 1.5 m, rectangle 3 a box face at 2.25 m."""
    pan = np.ones((H, W), np.uint16)
    depth = np.full((H, W), 4.0)
    pan[100:200, 50:250] = 2
    depth[100:200, 50:250] = 1.5
    pan[300:420, 400:600] = 3
    depth[300:420, 400:600] = 2.25
    return pan, depth


def boxes(pan: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(N, 4) xywh bounding box of each id."""
    out = []
    for i in ids:
        v, u = np.nonzero(pan == i)
        out.append((u.min(), v.min(), u.max() - u.min() + 1, v.max() - v.min() + 1))
    return np.array(out)


def back_projected_centre(pan: np.ndarray, oid: int, z: float) -> tuple[float, float]:
    v, u = np.nonzero(pan == oid)
    return (u.mean() - K.cx) * z / K.fx, (v.mean() - K.cy) * z / K.fy


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_planes_at_known_distances(encoding):
    pan, depth = scene()
    raw = (depth * 1000).astype(np.uint16) if encoding == "16UC1" else depth.astype(np.float32)
    ids = np.array([1, 2, 3])
    g = object_geometry(pan, ids, depth_in_metres(raw, encoding), K, boxes_xywh=boxes(pan, ids))
    assert g.has_position.all()
    np.testing.assert_allclose(g.depth_coverage, 1.0)
    for k, (oid, z) in enumerate(((1, 4.0), (2, 1.5), (3, 2.25))):
        assert g.position[k, 2] == pytest.approx(z, rel=0.02)
        x, y = back_projected_centre(pan, oid, g.position[k, 2])
        assert g.position[k, 0] == pytest.approx(x, rel=1e-5, abs=1e-6)
        assert g.position[k, 1] == pytest.approx(y, rel=1e-5, abs=1e-6)
    # sizes: rectangle 2 is 200 x 100 px at 1.5 m, flat in depth (its 20000 pixels are
    # sampled on a grid of every 3rd row and column: percentiles within one grid step)
    assert g.size[1, 0] == pytest.approx(200 * 1.5 / K.fx, rel=0.04)
    assert g.size[1, 1] == pytest.approx(100 * 1.5 / K.fy, rel=0.04)
    assert g.size[1, 2] == pytest.approx(0.0, abs=1e-3)
    assert g.index() == {1: 0, 2: 1, 3: 2}
    # without boxes every object is looked for in the whole image: the same numbers
    # (the sampling grid is the image's, whatever the box)
    whole = object_geometry(pan, ids, depth_in_metres(raw, encoding), K)
    np.testing.assert_array_equal(whole.position, g.position)
    np.testing.assert_array_equal(whole.size, g.size)


def test_tilted_floor_median_depth():
    """A floor plane 1.2 m below the camera: depth Z = fy * 1.2 / (v - cy) per row."""
    pan = np.ones((H, W), np.uint16)
    rows = np.arange(H, dtype=np.float64)
    below = rows > K.cy + 20
    pan[below] = 2
    depth = np.zeros((H, W), np.float32)
    depth[below] = (K.fy * 1.2 / (rows[below] - K.cy))[:, None]
    g = object_geometry(pan, np.array([1, 2]), depth, K)
    assert not g.has_position[0] and g.depth_coverage[0] == 0.0  # no depth above the floor
    assert g.has_position[1]
    z_rows = depth[below, 0]
    assert g.position[1, 2] == pytest.approx(np.median(z_rows), rel=0.02)
    # every floor point lies 1.2 m below the optical centre: Y = 1.2 at any depth
    assert g.position[1, 1] == pytest.approx(1.2, rel=0.02)
    assert g.size[1, 1] == pytest.approx(0.0, abs=0.01)


def test_invalid_depth_gives_no_position_and_no_crash():
    pan, depth = scene()
    d = depth.astype(np.float32)
    d[pan == 2] = np.nan  # the board: no measurement at all
    d[300:420, 400:590] = 0.0  # the box: 10 of 200 columns valid (5 %)
    d[0, 0] = np.inf
    g = object_geometry(pan, np.array([1, 2, 3, 9]), d, K)  # 9: not in the image
    assert g.has_position.tolist() == [True, False, False, False]
    assert g.depth_coverage[1] == 0.0
    assert g.depth_coverage[2] == pytest.approx(0.05)
    assert np.isnan(g.position[1:]).all()
    # 16UC1 zeros are "no measurement" too
    zeros = np.zeros((H, W), np.uint16)
    g = object_geometry(pan, np.array([1, 2, 3]), depth_in_metres(zeros, "16UC1"), K)
    assert not g.has_position.any()
    # a low coverage threshold accepts the box's 5 %
    g = object_geometry(pan, np.array([3]), d, K, min_coverage=0.04)
    assert g.has_position[0] and g.position[0, 2] == pytest.approx(2.25, rel=1e-4)


def test_no_objects_and_mismatched_size():
    pan, depth = scene()
    g = object_geometry(pan, np.zeros(0, np.uint16), depth, K)
    assert g.position.shape == (0, 3)
    with pytest.raises(DepthError) as e:
        object_geometry(pan, np.array([1]), depth[:240, :320], K)
    assert e.value.reason == "size_mismatch" and "320x240" in str(e.value)


def test_unsupported_encoding_and_bad_k():
    with pytest.raises(DepthError) as e:
        depth_in_metres(np.zeros((4, 4), np.uint8), "mono8")
    assert e.value.reason == "unsupported_encoding"
    with pytest.raises(DepthError) as e:
        Intrinsics.from_k([0.0] * 9, W, H)
    assert e.value.reason == "bad_camera_info"


def test_intrinsics_for_a_resized_image():
    k = Intrinsics.from_k(K.matrix(), W, H)
    assert k == K
    half = k.for_size(W // 2, H // 2)
    assert (half.fx, half.fy) == (K.fx / 2, K.fy / 2)
    assert (half.cx, half.cy) == (159.5, 119.5)  # the image centre stays the centre
    assert Intrinsics(1, 1, 0, 0, 0, 0).for_size(W, H).fx == 1  # size unknown: as given
