"""Tracking evaluation on sequences with ground-truth identities (IDF1, ID switches, MOTA).

The sequences are PSG-format frames whose ``data`` entries carry ``sequence`` and ``frame``
and whose ``segments_info`` carry ``track_id`` (``dsflash synth --sequences``). Each
sequence goes through a fresh :class:`~dsflash_ros.tracking.SceneGraphTracker`, frame by
frame, fed either

* ``gt``: the ground-truth segments (masks + classes, ids shuffled every frame): this
  measures the tracker alone; or
* ``predicted``: the segments the model finds in the frame image (the whole system).

Scoring counts things only (stuff regions are one segment per class and are tracked, but
not scored). A tracker output is matched to a ground-truth object when their masks overlap
with IoU >= 0.5 (distance 1 - IoU) and, as in multi-class MOT benchmarks (KITTI, BDD100K,
MOTS: each class is scored on its own), both have the same class: a track reported with
the wrong class is a false positive and its object a miss. ``overall`` is this
class-aware score over all classes (the counts of every class together);
``overall_class_agnostic`` ignores the class (it measures association alone). Objects
without a confirmed track id (0) count as not reported. The metrics are computed by
``motmetrics`` (the CLEAR-MOT and identity metrics of Ristani et al. 2016 as that library
implements them), not here.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsflash_ros.tracking import SceneGraphTracker, TrackingConfig
from dsflash_ros.tracking.frames import result_from_segments

MATCH_IOU = 0.5
METRICS = (
    "idf1",
    "idp",
    "idr",
    "num_switches",
    "mota",
    "motp",
    "num_frames",
    "num_objects",
    "num_unique_objects",
    "num_false_positives",
    "num_misses",
    "mostly_tracked",
)


@dataclass
class Sequence:
    """The frames of one sequence: dataset indices in frame order; ``missing``: frame
    numbers absent between its first and last frame (a gap the tracker has to bridge)."""

    name: str
    indices: list[int]
    missing: int = 0


def find_sequences(dataset: Any) -> list[Sequence]:
    """Group a PSGDataset's entries by ``sequence`` (ordered by ``frame``)."""
    groups: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i, entry in enumerate(dataset.entries):
        if "sequence" not in entry:
            continue
        groups[str(entry["sequence"])].append((int(entry["frame"]), i))
    if not groups:
        raise ValueError(
            "no sequences in this split: tracking needs frames with 'sequence', 'frame' and "
            "per-segment 'track_id' (make them with: dsflash synth --sequences N)"
        )
    out = []
    for name, g in sorted(groups.items()):
        g.sort()
        frames = len({f for f, _ in g})
        out.append(Sequence(name, [i for _, i in g], g[-1][0] - g[0][0] + 1 - frames))
    return out


def _gt_frame(dataset: Any, index: int, rng: np.random.Generator):
    """(image, ground-truth result with shuffled per-frame ids, GT id map, GT track ids)."""
    entry = dataset.entries[index]
    image, ids = dataset._read(index)
    segs = entry["segments_info"]
    seg_ids = np.array([s["id"] for s in segs], np.int64)
    labels = [int(s["category_id"]) for s in segs]
    tracks = np.array([int(s.get("track_id", 0)) for s in segs], np.int64)
    # compact per-frame ids in a random order, as a segmenter would number them
    order = rng.permutation(len(segs)) + 1
    lut = dict(zip(seg_ids.tolist(), order.tolist()))
    pan = np.zeros(ids.shape, np.uint16)
    for sid, new in lut.items():
        pan[ids == sid] = new
    result = result_from_segments(
        pan,
        order.tolist(),
        labels,
        list(dataset.class_names),
        is_thing=list(dataset.is_thing_classes),
    )
    return image, result, pan, order, tracks


def _distances(gt_pan, gt_ids, pred_pan, pred_ids) -> np.ndarray:
    """(G, P) 1 - mask IoU, NaN below MATCH_IOU (not a possible match)."""
    if len(gt_ids) == 0 or len(pred_ids) == 0:
        return np.empty((len(gt_ids), len(pred_ids)))
    g_max, p_max = int(gt_pan.max()) + 1, int(pred_pan.max()) + 1
    joint = np.bincount(
        gt_pan.astype(np.int64).ravel() * p_max + pred_pan.astype(np.int64).ravel(),
        minlength=g_max * p_max,
    ).reshape(g_max, p_max)
    g_area, p_area = joint.sum(1), joint.sum(0)
    gi, pi = np.asarray(gt_ids, np.int64), np.asarray(pred_ids, np.int64)
    inter = joint[np.ix_(gi, pi)].astype(np.float64)
    union = g_area[gi][:, None] + p_area[pi][None, :] - inter
    iou = inter / np.maximum(union, 1.0)
    return np.where(iou >= MATCH_IOU, 1.0 - iou, np.nan)


def evaluate_tracking(
    dataset: Any,
    config: TrackingConfig | None = None,
    pipeline: Callable[[np.ndarray], Any] | None = None,
    max_sequences: int | None = None,
    on_frame: Callable[[int], None] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """IDF1, ID switches (total and per 100 frames), MOTA and more, over all sequences.

    ``pipeline`` None: ground-truth segments; else the model's segments of each frame.
    """
    import motmetrics as mm

    config = config or TrackingConfig()
    sequences = find_sequences(dataset)[:max_sequences]
    rng = np.random.default_rng(seed)
    is_thing = np.asarray(dataset.is_thing_classes, bool)
    aware, agnostic, names = [], [], []
    for seq in sequences:
        tracker = SceneGraphTracker(dataclasses.replace(config))
        accs = mm.MOTAccumulator(auto_id=True), mm.MOTAccumulator(auto_id=True)
        for index in seq.indices:
            image, gt, gt_pan, gt_ids, gt_tracks = _gt_frame(dataset, index, rng)
            result = gt if pipeline is None else pipeline(image)
            tracked = tracker.update(result)
            res = tracked.result
            g = [k for k in range(gt.num_objects) if is_thing[int(gt.class_ids[k])]]
            p = [
                k
                for k in range(res.num_objects)
                if tracked.track_ids[k] > 0 and is_thing[int(res.class_ids[k])]
            ]
            d = _distances(
                gt_pan,
                [int(gt_ids[k]) for k in g],
                res.panoptic,
                [int(res.object_ids[k]) for k in p],
            )
            same = gt.class_ids[g][:, None] == res.class_ids[p][None, :]
            gt_keys = [int(gt_tracks[k]) for k in g]
            pred_keys = [int(tracked.track_ids[k]) for k in p]
            accs[0].update(gt_keys, pred_keys, np.where(same, d, np.nan))
            accs[1].update(gt_keys, pred_keys, d)
            if on_frame is not None:
                on_frame(1)
        aware.append(accs[0])
        agnostic.append(accs[1])
        names.append(seq.name)
    overall, per_sequence = _summaries(aware, names)
    return {
        "segments": "gt" if pipeline is None else "predicted",
        "sequences": len(sequences),
        "frames_missing": sum(s.missing for s in sequences),
        "match_iou": MATCH_IOU,
        "class_aware": True,
        "tracking": dataclasses.asdict(config),
        "overall": overall,
        "overall_class_agnostic": _summaries(agnostic, names)[0],
        "per_sequence": per_sequence,
    }


def _summaries(accumulators: list, names: list[str]) -> tuple[dict, dict]:
    """(overall, per sequence) metrics of one accumulator per sequence."""
    import motmetrics as mm

    mh = mm.metrics.create()
    table = mh.compute_many(accumulators, metrics=list(METRICS), names=names, generate_overall=True)
    overall = {k: _plain(v) for k, v in table.loc["OVERALL"].to_dict().items()}
    frames = overall["num_frames"]
    overall["id_switches_per_100_frames"] = 100.0 * overall["num_switches"] / max(frames, 1)
    per_sequence = {
        name: {k: _plain(v) for k, v in table.loc[name].to_dict().items()} for name in names
    }
    return overall, per_sequence


def _plain(v: Any) -> float | int:
    f = float(v)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def format_tracking(report: dict[str, Any]) -> str:
    """One readable block of a report."""
    o = report["overall"]
    gap = report.get("frames_missing", 0)
    gaps = f" ({gap} frames missing inside sequences)" if gap else ""
    agnostic = report.get("overall_class_agnostic")
    plain = f"; class-agnostic IDF1 {agnostic['idf1']:.3f}" if agnostic else ""
    return (
        f"{report['segments']} segments, {report['sequences']} sequences, "
        f"{o['num_frames']} frames{gaps}, {o['num_unique_objects']} objects; class-aware "
        f"(a track of the wrong class does not match){plain}\n"
        f"  IDF1 {o['idf1']:.3f} (IDP {o['idp']:.3f}, IDR {o['idr']:.3f})  "
        f"ID switches {o['num_switches']} ({o['id_switches_per_100_frames']:.2f} per 100 frames)\n"
        f"  MOTA {o['mota']:.3f}  MOTP(1-IoU) {o['motp']:.3f}  FP {o['num_false_positives']}  "
        f"misses {o['num_misses']}  mostly tracked {o['mostly_tracked']}"
    )
