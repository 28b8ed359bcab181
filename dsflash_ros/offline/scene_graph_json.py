"""The scene-graph JSON document (``"schema": "dsflash.scene_graph"``, version 1).

One document per image (``<name>.json``) or per processed video frame (one line each of
``<name>.jsonl``)::

    {
      "schema": "dsflash.scene_graph", "version": 1,
      "source": "kitchen.jpg",            # input file name
      "frame": null,                      # video frame index (null for images)
      "timestamp_ms": null,               # video position of that frame, if known
      "image": {"width": 640, "height": 480},
      "model": {"id": "dsflash-tiny-1a2b3c4d5e6f", "num_classes": 133, "num_predicates": 56},
      "panoptic_png": "kitchen_panoptic.png",   # 16-bit id image (pixel = object id), or null
      "timings_ms": {"backbone": 12.1, ..., "total": 20.3},
      "objects": [{"id": 1, "class_id": 60, "class": "dining table", "is_thing": true,
                   "score": 0.93, "bbox": [x, y, w, h], "area": 5120,
                   "centroid": [cx, cy]}, ...],
      "relations": [{"subject": 2, "object": 1, "predicate_id": 0, "predicate": "over",
                     "score": 0.41,
                     "alternatives": [{"predicate_id": 5, "predicate": "on", "score": 0.2}]}]
    }

Video frames processed with tracking (``dsflash infer`` on a video) add ``"track_id"`` to
each object (stable across frames; 0 = not confirmed yet) and ``"observed"`` (false: the
model missed the object in this frame and its track is held, its mask moved by the track's
motion; see ``track_coast_frames``), and ``"subject_track"`` / ``"object_track"`` to each
relation; all are optional.

Pixel coordinates are in the input image (x right, y down, origin top-left pixel corner for
``bbox``; ``centroid`` is the mean pixel index). Object ``id`` is the value of the object's
pixels in the panoptic PNG (0 = no object); relations refer to these ids and are sorted by
score, highest first. ``SCENE_GRAPH_SCHEMA`` is the machine-readable JSON Schema;
:func:`validate_scene_graph` checks a document against it (with ``jsonschema`` when installed,
always with the small built-in validator) plus the cross-references a schema cannot express.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from dsflash_ros.runtime.result import SceneGraphResult

SCHEMA_NAME = "dsflash.scene_graph"
SCHEMA_VERSION = 1
_DIGITS = 4  # float precision written (scores, centroids, timings)


class SceneGraphValidationError(ValueError):
    """A document does not follow the scene-graph schema; ``errors`` lists every problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        shown = "; ".join(errors[:5]) + (f"; ... ({len(errors)} in all)" if len(errors) > 5 else "")
        super().__init__(f"invalid {SCHEMA_NAME} document: {shown}")


def _num(minimum: float | None = None, maximum: float | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "number"}
    if minimum is not None:
        s["minimum"] = minimum
    if maximum is not None:
        s["maximum"] = maximum
    return s


def _int(minimum: int | None = None) -> dict[str, Any]:
    return {"type": "integer"} if minimum is None else {"type": "integer", "minimum": minimum}


def _obj(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [k for k in properties if k not in optional],
        "additionalProperties": False,
    }


def _pair(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item, "minItems": 2, "maxItems": 2}


_SCORE = _num(0.0, 1.0)
_PREDICTION = _obj({"predicate_id": _int(0), "predicate": {"type": "string"}, "score": _SCORE})

SCENE_GRAPH_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "DSFlash scene graph of one image or video frame",
    **_obj(
        {
            "schema": {"const": SCHEMA_NAME},
            "version": {"const": SCHEMA_VERSION},
            "source": {"type": ["string", "null"]},
            "frame": {"type": ["integer", "null"], "minimum": 0},
            "timestamp_ms": {"type": ["number", "null"]},
            "image": _obj({"width": _int(1), "height": _int(1)}),
            "model": _obj(
                {"id": {"type": "string"}, "num_classes": _int(0), "num_predicates": _int(0)}
            ),
            "panoptic_png": {"type": ["string", "null"]},
            "timings_ms": {"type": "object", "additionalProperties": _num(0.0)},
            "objects": {
                "type": "array",
                "items": _obj(
                    {
                        "id": _int(1),
                        "class_id": _int(0),
                        "class": {"type": "string"},
                        "is_thing": {"type": "boolean"},
                        "score": _SCORE,
                        "bbox": {"type": "array", "items": _int(0), "minItems": 4, "maxItems": 4},
                        "area": _int(1),
                        "centroid": _pair(_num()),
                        "track_id": _int(0),
                        "observed": {"type": "boolean"},
                    },
                    optional=("track_id", "observed"),
                ),
            },
            "relations": {
                "type": "array",
                "items": _obj(
                    {
                        "subject": _int(1),
                        "object": _int(1),
                        "predicate_id": _int(0),
                        "predicate": {"type": "string"},
                        "score": _SCORE,
                        "alternatives": {"type": "array", "items": _PREDICTION},
                        "subject_track": _int(0),
                        "object_track": _int(0),
                    },
                    optional=("subject_track", "object_track"),
                ),
            },
        },
        optional=("panoptic_png",),
    ),
}


# --------------------------------------------------------------------------- writing


def _round(x: float) -> float:
    return round(float(x), _DIGITS)


def result_to_document(
    result: SceneGraphResult,
    source: str | None = None,
    frame: int | None = None,
    timestamp_ms: float | None = None,
    panoptic_png: str | None = None,
    track_ids: Any = None,
    relation_tracks: tuple[Any, Any] | None = None,
    observed: Any = None,
) -> dict[str, Any]:
    """The JSON document (plain dict) of one frame's result. ``track_ids[i]``: track id of
    object i; ``observed[i]``: whether object i was found in this frame (false: held by its
    track); ``relation_tracks``: (subject tracks, object tracks) per relation (tracking)."""
    objects = [
        {
            "id": o.id,
            "class_id": o.class_id,
            "class": o.class_name,
            "is_thing": o.is_thing,
            "score": _round(o.score),
            "bbox": list(o.bbox_xywh),
            "area": o.area,
            "centroid": [_round(o.centroid_xy[0]), _round(o.centroid_xy[1])],
        }
        for o in result.objects()
    ]
    names = result.predicate_names
    relations = [
        {
            "subject": r.subject_id,
            "object": r.object_id,
            "predicate_id": r.predicate_id,
            "predicate": r.predicate,
            "score": _round(r.score),
            "alternatives": [
                {"predicate_id": p, "predicate": names[p], "score": _round(s)}
                for p, s in r.alternatives
            ],
        }
        for r in result.relations()
    ]
    if track_ids is not None:
        for o, tid in zip(objects, track_ids):
            o["track_id"] = int(tid)
    if observed is not None:
        for o, seen in zip(objects, observed):
            o["observed"] = bool(seen)
    if relation_tracks is not None:
        for r, st, ot in zip(relations, *relation_tracks):
            r["subject_track"], r["object_track"] = int(st), int(ot)
    doc: dict[str, Any] = {
        "schema": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "source": source,
        "frame": frame,
        "timestamp_ms": None if timestamp_ms is None else _round(timestamp_ms),
        "image": {"width": result.width, "height": result.height},
        "model": {
            "id": result.model_id,
            "num_classes": len(result.class_names),
            "num_predicates": len(result.predicate_names),
        },
        "panoptic_png": panoptic_png,
        "timings_ms": {k: _round(v) for k, v in result.timings_ms.items()},
        "objects": objects,
        "relations": relations,
    }
    return doc


# --------------------------------------------------------------------------- validation

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "integer": (int,),
    "number": (int, float),
}


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False  # JSON booleans are not numbers
    if name == "number" and isinstance(value, float) and not math.isfinite(value):
        return False  # NaN/Infinity are not JSON
    return isinstance(value, _TYPES[name])


def _check(value: Any, schema: Mapping[str, Any], where: str, errors: list[str]) -> None:
    """The JSON Schema keywords ``SCENE_GRAPH_SCHEMA`` uses, nothing more."""
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: expected {schema['const']!r}, got {value!r}")
        return
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            errors.append(f"{where}: expected {' or '.join(types)}, got {type(value).__name__}")
            return
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{where}: needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: allows at most {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{where}[{i}]", errors)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing field {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                _check(item, props[key], f"{where}.{key}", errors)
            elif extra is False:
                errors.append(f"{where}: unknown field {key!r}")
            elif isinstance(extra, Mapping):
                _check(item, extra, f"{where}.{key}", errors)


def _check_references(doc: Mapping[str, Any], errors: list[str]) -> None:
    """What JSON Schema cannot say: unique object ids, relations between known objects,
    boxes inside the image, relations sorted by score."""
    objects, relations = doc.get("objects", []), doc.get("relations", [])
    ids = [o.get("id") for o in objects]
    if len(set(ids)) != len(ids):
        errors.append("objects: object ids are not unique")
    known = set(ids)
    for i, r in enumerate(relations):
        for end in ("subject", "object"):
            if r.get(end) not in known:
                errors.append(f"relations[{i}].{end}: no object with id {r.get(end)!r}")
        if r.get("subject") == r.get("object"):
            errors.append(f"relations[{i}]: subject and object are the same object")
    scores = [r.get("score", 0.0) for r in relations]
    if any(a < b for a, b in itertools.pairwise(scores)):
        errors.append("relations: not sorted by score (highest first)")
    width, height = doc.get("image", {}).get("width"), doc.get("image", {}).get("height")
    for i, o in enumerate(objects):
        x, y, w, h = o.get("bbox", (0, 0, 0, 0))
        if x + w > width or y + h > height:
            errors.append(f"objects[{i}].bbox: {o['bbox']} exceeds the {width}x{height} image")


def validate_scene_graph(doc: Any) -> None:
    """Raise ``SceneGraphValidationError`` listing every way ``doc`` breaks the schema."""
    errors: list[str] = []
    _check(doc, SCENE_GRAPH_SCHEMA, "$", errors)
    try:
        import jsonschema  # optional: the reference implementation, when installed
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        validator = jsonschema.Draft202012Validator(SCENE_GRAPH_SCHEMA)
        for e in validator.iter_errors(doc):
            path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.path)
            message = f"{path}: {e.message}"
            if not any(err.startswith(path) for err in errors):
                errors.append(message)
    if not errors:
        _check_references(doc, errors)
    if errors:
        raise SceneGraphValidationError(errors)
