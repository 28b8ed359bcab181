"""Human-readable tables and CSV / JSON files for evaluator summaries.

Summaries are the dicts returned by ``SceneGraphEvaluator.summary()`` (``kind ==
"scene_graph"``) and ``PanopticQualityEvaluator.summary()`` (``kind == "panoptic_quality"``).
Tables show percentages; files keep the raw fractions (NaN -> ``null`` in JSON, empty in CSV).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from dsflash_ros.evaluate.breakdown import bucket_names


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100.0 * float(value):.2f}"


def _kind(summary: dict[str, Any]) -> str:
    kind = summary.get("kind") if isinstance(summary, dict) else None
    if kind not in ("scene_graph", "panoptic_quality"):
        raise ValueError("summary must come from SceneGraphEvaluator or PanopticQualityEvaluator")
    return kind


def _recall_columns(summary: dict[str, Any]) -> list[str]:
    prefix = "R" if summary["graph_constraint"] else "NgR"
    return [f"{prefix}@{k}" for k in summary["ks"]] + ["R@inf"]


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(row[0]).ljust(widths[0])]
        cells += [str(v).rjust(w) for v, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _format_scene_graph(summary: dict[str, Any], per_class: bool) -> str:
    counts = summary["counts"]
    columns = _recall_columns(summary)
    constraint = "graph constraint" if summary["graph_constraint"] else "no graph constraint"
    lines = [
        f"Scene-graph recall (SingleMPO, protocol {summary['protocol']}, {constraint}), in %",
        f"images {counts['images']} (skipped without GT relations: {counts['skipped_images']},"
        f" without prediction: {counts['images_without_prediction']}),"
        f" GT triplets {counts['gt_triplets']}",
        "",
    ]
    header = ["metric", *["@" + c.split("@", 1)[1] for c in columns]]
    recall_row = ["R" if summary["graph_constraint"] else "NgR"]
    mean_row = ["m" + recall_row[0]]
    for column in columns:
        recall_row.append(_pct(summary[column]))
        mean_row.append(_pct(summary["m" + column]))
    lines += _grid(header, [recall_row, mean_row])
    lines.append(
        f"mean over {counts['predicates_with_gt']} predicates with GT; "
        f"{counts['predicates_without_gt']} without GT excluded"
    )
    if per_class:
        rows = [
            [row["name"], str(row["images"]), str(row["gt_triplets"])]
            + [_pct(row[c]) for c in columns]
            for row in summary["per_predicate"]
        ]
        lines += ["", *_grid(["predicate", "images", "GT", *columns], rows)]
    return "\n".join(lines)


def _format_panoptic(summary: dict[str, Any], per_class: bool) -> str:
    counts = summary["counts"]
    lines = [
        "Panoptic quality, in %",
        f"images {counts['images']}, TP {counts['TP']}, FP {counts['FP']}, FN {counts['FN']}",
        "",
    ]
    rows = [["all", _pct(summary["PQ"]), _pct(summary["SQ"]), _pct(summary["RQ"])]]
    rows[0].append(str(summary["classes"]))
    for group in ("things", "stuff"):
        g = summary[group]
        rows.append([group, _pct(g["PQ"]), _pct(g["SQ"]), _pct(g["RQ"]), str(g["classes"])])
    lines += _grid(["", "PQ", "SQ", "RQ", "classes"], rows)
    if per_class:
        class_rows = [
            [r["name"], *(_pct(r[m]) for m in ("PQ", "SQ", "RQ"))]
            + [str(r[m]) for m in ("TP", "FP", "FN")]
            for r in summary["per_class"]
            if r["TP"] + r["FP"] + r["FN"] > 0
        ]
        lines += ["", *_grid(["class", "PQ", "SQ", "RQ", "TP", "FP", "FN"], class_rows)]
    return "\n".join(lines)


def format_table(summary: dict[str, Any], per_class: bool = True) -> str:
    """Readable text table of a summary (percentages); ``per_class`` adds the breakdown."""
    if _kind(summary) == "scene_graph":
        return _format_scene_graph(summary, per_class)
    return _format_panoptic(summary, per_class)


MODE_TITLES = {"sgdet": "SGDet", "predcls": "PredCls"}


def _side_by_side(header: list[str], rows: list[list[str]], min_rows: int = 8) -> list[str]:
    """A :func:`_grid` table folded into two columns (read down the left, then the right)."""
    if len(rows) <= min_rows:
        return _grid(header, rows)
    half = (len(rows) + 1) // 2
    left, right = _grid(header, rows[:half]), _grid(header, rows[half:])
    width = max(len(line) for line in left)
    right += [""] * (len(left) - len(right))
    return [f"{a.ljust(width)} | {b}".rstrip() for a, b in zip(left, right)]


def _format_sizes(by_size: dict[str, Any], modes: list[str]) -> list[str]:
    k = by_size["triplets_k"]
    things = by_size.get("things") or []
    triplets = {m: by_size["triplets"][m] for m in modes if m in by_size["triplets"]}
    header = ["area (px)"]
    if things:
        header += ["GT", "found", "IoU", "pred", "precision"]
    if triplets:
        header += ["triplets", *(f"{MODE_TITLES[m]}@{k}" for m in triplets)]
    rows = []
    for i, name in enumerate(bucket_names(by_size["edges_px"])):
        row = [name]
        if things:
            t = things[i]
            row += [str(t["gt_things"]), _pct(t["found_share"]), _pct(t["matched_iou"])]
            row += [str(t["pred_things"]), _pct(t["precision"])]
        if triplets:  # every mode scores the same GT triplets
            row.append(str(next(iter(triplets.values()))[i]["gt_triplets"]))
            row += [_pct(table[i][f"hit_share@{k}"]) for table in triplets.values()]
        rows.append(row)
    sizes = " / ".join(f"{h}x{w}" for h, w in by_size["image_sizes"]) or "-"
    title = f"By size, in % (area in pixels of the {sizes} (HxW) GT images"
    lines = [title + ("; triplets by their smaller end)" if triplets else ")")]
    lines += _grid(header, rows)
    if things:
        lines.append(
            "found: share of GT things matched (IoU: of those); precision: of predicted things"
        )
    return lines


def _format_classes(pq: dict[str, Any], max_rows: int) -> list[str]:
    present = [r for r in pq["per_class"] if r["TP"] + r["FP"] + r["FN"] > 0]
    present.sort(key=lambda r: (r["PQ"], r["name"]))
    rows = [
        [r["name"] + ("" if r["is_thing"] else " (s)"), _pct(r["PQ"])]
        + [str(r[m]) for m in ("TP", "FP", "FN")]
        for r in present[:max_rows]
    ]
    lines = ["Per-class PQ (SGDet segments), weakest first, in %; (s) = stuff"]
    lines += _side_by_side(["class", "PQ", "TP", "FP", "FN"], rows)
    if len(present) > max_rows:
        lines.append(f"... {len(present) - max_rows} more classes in metrics.json pq.per_class")
    return lines


def _format_predicates(summary: dict[str, Any], modes: list[str], k: int, max_rows: int):
    prefix = "R" if summary[modes[0]]["graph_constraint"] else "NgR"
    column = f"{prefix}@{k}"
    tables = {m: summary[m]["per_predicate"] for m in modes}
    first = tables[modes[0]]
    order = sorted(
        (i for i, r in enumerate(first) if r["gt_triplets"] > 0),
        key=lambda i: (first[i][column], first[i]["name"]),
    )
    rows = [
        [first[i]["name"], str(first[i]["gt_triplets"])]
        + [_pct(tables[m][i][column]) for m in modes]
        for i in order[:max_rows]
    ]
    lines = [f"Per-predicate {column}, weakest {MODE_TITLES[modes[0]]} first, in %"]
    lines += _side_by_side(["predicate", "GT", *(MODE_TITLES[m] for m in modes)], rows)
    if len(order) > max_rows:
        lines.append(f"... {len(order) - max_rows} more predicates in metrics.json per_predicate")
    return lines


def format_breakdown(summary: dict[str, Any], max_rows: int = 24) -> str:
    """Where the model fails, for a terminal: size buckets, per-class PQ, per-predicate recall.

    ``summary`` is what ``evaluate_dataset`` returns; classes and predicates are listed
    weakest first, at most ``max_rows`` of each (folded into two columns).
    """
    modes = [m for m in MODE_TITLES if m in summary]
    by_size = summary.get("by_size")
    k = by_size["triplets_k"] if by_size else 50
    parts = []
    if by_size and (by_size.get("things") or by_size["triplets"]):
        parts.append(_format_sizes(by_size, modes))
    if "pq" in summary:
        parts.append(_format_classes(summary["pq"], max_rows))
    if modes:
        parts.append(_format_predicates(summary, modes, k, max_rows))
    return "\n\n".join("\n".join(lines) for lines in parts)


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike[str], summary: dict[str, Any]) -> None:
    """Write the whole summary as JSON (strict: NaN becomes null)."""
    _kind(summary)
    Path(path).write_text(
        json.dumps(_plain(summary), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows for CSV: per predicate / class, plus aggregate rows.

    Scene graph: one row per predicate, then ``mean`` (mR@k, mR@inf) and ``all`` (R@k,
    R@inf). Panoptic: one row per class, then ``all``, ``things``, ``stuff``.
    """
    if _kind(summary) == "scene_graph":
        columns = _recall_columns(summary)
        rows = [dict(row) for row in summary["per_predicate"]]
        counts = summary["counts"]
        aggregate = {"images": counts["images"], "gt_triplets": counts["gt_triplets"]}
        rows.append(
            {"predicate": "mean", "name": "mean over predicates", **aggregate}
            | {c: summary["m" + c] for c in columns}
        )
        rows.append(
            {"predicate": "all", "name": "mean over images", **aggregate}
            | {c: summary[c] for c in columns}
        )
        return rows
    rows = [dict(row) for row in summary["per_class"]]
    for group in ("all", "things", "stuff"):
        values = summary if group == "all" else summary[group]
        rows.append({"class": group, "name": group} | {m: values[m] for m in ("PQ", "SQ", "RQ")})
    return rows


def write_csv(path: str | os.PathLike[str], summary: dict[str, Any]) -> None:
    """Write :func:`summary_rows` as CSV (fractions; NaN cells left empty)."""
    rows = [_plain(row) for row in summary_rows(summary)]
    fields: list[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
