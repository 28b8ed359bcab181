"""``dsflash bench --ros``: the node's figures from the scene graphs a listener received, and
the report's text (ROS-free: the ROS side, ``dsflash_ros.ros.programs.bench_node``, hands in
plain numbers).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Graph(NamedTuple):
    """One scene graph as the listener saw it."""

    stamp: float  # its header stamp: the input frame's publish time (s since the epoch)
    received: float  # when it arrived here (same clock)
    pipeline_ms: float  # the pipeline's time for its frame, as the graph reports it


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile of ``values``; None for none."""
    return float(np.percentile(values, q)) if values else None


def node_stats(
    graphs: list[Graph], stamps: list[float], windows: list[tuple[float, float]]
) -> dict[str, Any]:
    """Over the measured ``windows`` (wall-clock intervals): fps, latency and pipeline time of
    the graphs received in them; frames published in them and how many of those were
    answered (at any time)."""

    def inside(t: float) -> bool:
        return any(t0 <= t <= t1 for t0, t1 in windows)

    seconds = sum(t1 - t0 for t0, t1 in windows)
    received = [g for g in graphs if inside(g.received)]
    latency_ms = [(g.received - g.stamp) * 1e3 for g in received]
    published = sum(1 for s in stamps if inside(s))
    return {
        "fps": len(received) / seconds,
        "latency_p50_ms": percentile(latency_ms, 50),
        "latency_p95_ms": percentile(latency_ms, 95),
        "frame_p50_ms": percentile([g.pipeline_ms for g in received], 50),
        "published": published,
        "answered": len({g.stamp for g in graphs if inside(g.stamp)}),
        "received_in_window": len(received),
        "publish_rate_hz": published / seconds,
        "window_s": seconds,
    }


def per_frame(
    cores: float | None, faults: float | None, seconds: float, frames: int
) -> dict[str, float | None]:
    """CPU milliseconds and page faults per frame from the cores used over ``seconds`` and
    the faults counted meanwhile (None where /proc could not say, or no frame)."""
    if not frames:
        return {"cpu_ms_per_frame": None, "faults_per_frame": None}
    return {
        "cpu_ms_per_frame": None if cores is None else cores * seconds * 1e3 / frames,
        "faults_per_frame": None if faults is None else faults / frames,
    }


def format_report(report: dict[str, Any]) -> str:
    from dsflash_ros.bench.pipeline import format_table  # imports torch: only when needed

    c, node, bare = report["config"], report["node"], report["bare"]
    prune = ", prune" if c.get("prune") else ""
    where = f"{c['backend']} {c['precision']}{prune} on {c['device']}, {c['model']}"
    encoding = "jpeg" if c.get("transport") == "compressed" else "rgb8"
    return "\n\n".join(
        [
            format_table(
                f"ros node: own process, {c['size']} {encoding} at {c['rate']:g} Hz, {where} "
                "(cpu: cores used by node, camera, listener)",
                [node],
                (
                    "fps",
                    "latency_p50_ms",
                    "latency_p95_ms",
                    "frame_p50_ms",
                    "published",
                    "answered",
                    "window_s",
                    "cpu_node",
                    "cpu_node_workers",
                    "cpu_node_executor",
                    "cpu_node_dds",
                    "cpu_camera",
                    "cpu_listener",
                    "cpu_ms_per_frame",
                    "faults_per_frame",
                    "node_peak_mb",
                ),
            ),
            format_table(
                "bare pipeline: this process, the node's number of workers, in "
                f"{c['rounds']} windows between the node's; bare: the same frames back to "
                "back, camera paused; fed: the camera's frames, each worker taking the newest",
                [{"run": "bare"} | bare, {"run": "fed"} | report["bare_fed"]],
                (
                    "run",
                    "fps",
                    "frame_p50_ms",
                    "frames",
                    "seconds",
                    "workers",
                    "threads",
                    "cpu_bare",
                    "cpu_ms_per_frame",
                    "faults_per_frame",
                    "input_hz",
                ),
            ),
            _ratio_line(report, "bare"),
            _ratio_line(report, "fed") + _camera_line(report),
        ]
    )


def _camera_line(report: dict[str, Any]) -> str:
    """When the camera sends fewer frames than the bare pipeline processes, say so: node vs
    bare then measures the camera as well, node vs fed compares like with like."""
    rate, bare_fps = report["node"].get("publish_rate_hz"), report["bare"]["fps"]
    if not rate or rate >= bare_fps:
        return ""
    return (
        f"\n  the camera ({rate:.1f} Hz) sends fewer frames than the bare pipeline processes "
        f"({bare_fps:.1f} fps): node vs bare cannot pass {100 * rate / bare_fps:.0f} %; "
        "node vs fed compares the node with the pipeline taking the same frames"
    )


def _ratio_line(report: dict[str, Any], kind: str) -> str:
    rounds = ", ".join(f"{p:.1f}" for p in report.get(f"node_vs_{kind}_pct_rounds", []))
    return (
        f"node_vs_{kind}_pct (node fps / {kind} fps * 100): {report[f'node_vs_{kind}_pct']:.1f}"
        f" (per round: {rounds})"
    )
