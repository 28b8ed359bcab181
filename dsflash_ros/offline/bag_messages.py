"""ROS 2 messages without ROS: the ``rosbags`` type store with the package's own messages.

The package's ``msg/*.msg`` files are read at run time and registered next to the standard
ROS 2 (Kilted) types, so the schemas written into a recording are exactly the package's
definitions, and a field added to a .msg file is written without a code change.
:func:`build` turns plain fields (:mod:`dsflash_ros.message_fields`) into a message of the
store: fields left out get their defaults (0, "", empty arrays, default sub-messages).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "dsflash_ros"
_DTYPES = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}  # fmt: skip
_BASE, _NAME, _ARRAY, _SEQUENCE = 1, 2, 3, 4  # rosbags' Nodetype values


def msg_dir() -> Path:
    """The package's ``msg/`` folder: ``$DSFLASH_MSG_DIR``, the source checkout's, or the
    ``share/dsflash_ros/msg`` of a ROS install."""
    if os.environ.get("DSFLASH_MSG_DIR"):
        return Path(os.environ["DSFLASH_MSG_DIR"])
    here = Path(__file__).resolve().parents[2] / "msg"
    if here.is_dir():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "msg"
    except Exception:  # not a ROS install
        return here


@cache
def typestore() -> Typestore:
    """The standard ROS 2 types plus ``dsflash_ros/msg/*`` from :func:`msg_dir`."""
    folder = msg_dir()
    files = sorted(folder.glob("*.msg"))
    if not files:
        raise FileNotFoundError(f"no message definitions (*.msg) in {folder}")
    store = get_typestore(Stores.ROS2_KILTED)
    types: dict = {}
    for path in files:
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


def schema_text(msgtype: str) -> str:
    """The ``ros2msg`` definition of ``msgtype`` with its dependencies (an MCAP schema)."""
    return typestore().generate_msgdef(msgtype, ros_version=2)[0]


def serialize(msg: Any) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(data: bytes | memoryview, msgtype: str) -> Any:
    return typestore().deserialize_cdr(data, msgtype)


def build(msgtype: str, fields: dict[str, Any] | None = None) -> Any:
    """A ``msgtype`` message of the store from plain fields (see the module docstring).
    A value that already is a message of the store (a header read from a recording) is
    used as it is."""
    store = typestore()
    fields = fields or {}
    _, definitions = store.fielddefs[msgtype]
    values = {name: _value(kind, detail, fields.get(name)) for name, (kind, detail) in definitions}
    return store.types[msgtype](**values)


def _value(kind: int, detail: Any, value: Any) -> Any:
    if kind == _NAME:
        return build(detail, value) if value is None or isinstance(value, dict) else value
    if kind == _BASE:
        return _scalar(detail[0], value)
    (element_kind, element), length = detail
    if element_kind == _NAME:
        return [_value(_NAME, element, v) for v in (value or [{}] * length)]
    name = element[0]
    if name == "string":
        return list(value) if value is not None else [""] * length
    dtype = _DTYPES[name]
    if value is None:
        return np.zeros(length, dtype)
    return np.ascontiguousarray(value, dtype=dtype).reshape(-1)


def _scalar(name: str, value: Any) -> Any:
    if name == "string":
        return "" if value is None else str(value)
    if name == "bool":
        return bool(value)
    kind = np.dtype(_DTYPES[name]).kind
    return float(value or 0.0) if kind == "f" else int(value or 0)
