"""Where the embedded default model lives and how a checkpoint file is identified.

Kept free of torch so that ``dsflash --version`` answers without loading it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

# the safetensors metadata key that holds a checkpoint's config and provenance (JSON)
METADATA_KEY = "dsflash"
DEFAULT_MODEL_NAME = "dsflash_tiny_synth.safetensors"


def default_model_path() -> Path:
    """The embedded default model: ``$DSFLASH_MODEL``, the repo's ``models/``, or the
    ``share/dsflash_ros/models`` of a ROS install."""
    if os.environ.get("DSFLASH_MODEL"):
        return Path(os.environ["DSFLASH_MODEL"])
    here = Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_NAME
    if here.is_file():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("dsflash_ros")) / "models" / DEFAULT_MODEL_NAME
    except Exception:  # not a ROS install, or package not registered there
        return here


def file_sha12(path: str | Path) -> str:
    """sha256 of a file's bytes, first 12 hex (provenance of the exact file)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, read from its JSON header (8-byte
    little-endian length, then the header) without loading any tensor library."""
    with Path(path).open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if not 2 <= size <= 100_000_000:
            raise ValueError(f"not a safetensors file (header size {size})")
        header = json.loads(f.read(size))
    return dict(header.get("__metadata__") or {})
