"""Fill an rclpy message from plain fields (:mod:`dsflash_ros.message_fields`).

Nested messages come as dicts, message sequences as lists of dicts, numeric arrays as numpy
arrays (copied once into the ``array.array`` rclpy keeps them in); any other value, such as
an rclpy Header, is assigned as it is.
"""

from __future__ import annotations

import array
import importlib
from functools import cache
from typing import Any, TypeVar

import numpy as np

M = TypeVar("M")


@cache
def _element_classes(cls: type) -> dict[str, type]:
    """Field name -> message class of the elements, for the message-sequence fields."""
    out = {}
    for name, slot in zip(cls.get_fields_and_field_types(), cls.SLOT_TYPES):
        element = getattr(slot, "value_type", None)
        if element is not None and hasattr(element, "namespaces"):
            module = importlib.import_module(".".join(element.namespaces))
            out[name] = getattr(module, element.name)
    return out


def _array(values: np.ndarray) -> Any:
    if values.dtype == np.bool_:
        return values.tolist()  # rclpy keeps bool[] as a list
    out = array.array(values.dtype.char)
    if values.size:  # (an empty array has no buffer to copy)
        out.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8))
    return out


def fill(msg: M, fields: dict[str, Any]) -> M:
    """Set ``fields`` on ``msg`` (recursively) and return it."""
    for name, value in fields.items():
        if isinstance(value, dict):
            fill(getattr(msg, name), value)
            continue
        if isinstance(value, np.ndarray):
            value = _array(value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            element = _element_classes(type(msg))[name]
            value = [fill(element(), v) for v in value]
        setattr(msg, name, value)
    return msg
