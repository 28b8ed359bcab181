"""What a checkpoint says about itself at run time: its training domain and operating point.

Two keys of a checkpoint's extra metadata (:func:`dsflash_ros.model.checkpoint.save_checkpoint`):

* ``domain``: where the model learned to see -- ``"synthetic"`` (this project's generated
  scenes only: its output on camera images is meaningless) or ``"real"`` (photographs, e.g. a
  converted COCO-panoptic EoMT, or a head trained on PSG). Only ``"synthetic"`` warns.
* ``recommended_thresholds``: the operating point the model was tuned for, e.g.
  ``{"score_threshold": 0.5, "relation_threshold": 0.05}``; it becomes the pipeline's default
  for every threshold the user did not set (:meth:`PipelineOptions.resolved`).

Checkpoints written before these keys existed still say ``synthetic`` when their training
provenance names the synthetic generator (``extra["data"]["info"]["generator"]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DOMAIN_KEY = "domain"
THRESHOLDS_KEY = "recommended_thresholds"
INPUT_SIZE_KEY = "recommended_input_size"  # square model input the pipeline runs at by default
SYNTHETIC = "synthetic"
REAL = "real"
SYNTH_GENERATOR = "dsflash_ros.data.synth"  # the `generator` that `dsflash synth` records
# pipeline options a checkpoint may recommend (each a probability in [0, 1])
RECOMMENDABLE = ("score_threshold", "relation_threshold")


class ProvenanceError(ValueError):
    """A domain or a set of recommended thresholds is malformed."""


def check_thresholds(values: Any, where: str = "recommended_thresholds") -> dict[str, float]:
    """``values`` as ``{name: float}``; ``ProvenanceError`` on an unknown name or a bad value."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ProvenanceError(f"{where} must be a mapping, got {type(values).__name__}")
    out: dict[str, float] = {}
    for name, value in values.items():
        if name not in RECOMMENDABLE:
            raise ProvenanceError(
                f"{where}: unknown threshold {name!r} (known: {', '.join(RECOMMENDABLE)})"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProvenanceError(f"{where}.{name} must be a number, got {value!r}")
        if not 0.0 <= float(value) <= 1.0:
            raise ProvenanceError(f"{where}.{name} must be in [0, 1], got {value}")
        out[name] = float(value)
    return out


def check_input_size(value: Any, where: str = INPUT_SIZE_KEY) -> int | None:
    """``value`` as a positive int (None stays None); ``ProvenanceError`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ProvenanceError(f"{where} must be a positive whole number of pixels, got {value!r}")
    return value


def _generated(meta: Mapping[str, Any]) -> bool:
    """Whether ``psg.json`` extras (or a checkpoint's ``data`` provenance) name our generator."""
    info = meta.get("info")
    generator = info.get("generator") if isinstance(info, Mapping) else meta.get("generator")
    return generator == SYNTH_GENERATOR


def dataset_domain(meta: Mapping[str, Any]) -> str:
    """Domain of a PSG-format dataset from its ``psg.json`` top-level extras.

    An explicit ``domain`` key wins; data written by ``dsflash synth`` (``info.generator``) is
    synthetic; anything else (PSG itself, your own photographs) counts as real.
    """
    explicit = meta.get(DOMAIN_KEY)
    if isinstance(explicit, str) and explicit:
        return explicit
    return SYNTHETIC if _generated(meta) else REAL


def combine_domains(*domains: str | None) -> str | None:
    """Domain of a model assembled from parts: synthetic if any part only saw synthetic data."""
    known = [d for d in domains if d]
    if not known:
        return None
    return SYNTHETIC if SYNTHETIC in known else known[0]


def model_domain(extra: Mapping[str, Any]) -> str | None:
    """The domain a checkpoint's metadata records (``None`` = not recorded)."""
    domain = extra.get(DOMAIN_KEY)
    if isinstance(domain, str) and domain:
        return domain
    data = extra.get("data")
    if isinstance(data, Mapping) and _generated(data):
        return SYNTHETIC  # written by the trainer before the domain key existed
    return None


@dataclass(frozen=True)
class ModelFacts:
    """Domain and recommended thresholds of a loaded model (empty for unknown provenance)."""

    domain: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    input_size: int | None = None  # recommended square model input (None: the trained size)

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> ModelFacts:
        return cls(
            model_domain(extra),
            check_thresholds(extra.get(THRESHOLDS_KEY)),
            check_input_size(extra.get(INPUT_SIZE_KEY)),
        )

    @property
    def synthetic(self) -> bool:
        return self.domain == SYNTHETIC

    def warning(self, model_name: str) -> str | None:
        """The one-line run-time warning for a synthetic-only model, else ``None``."""
        if not self.synthetic:
            return None
        return (
            f"model {model_name} was trained on synthetic scenes only: its output on camera "
            "images is meaningless; see models/MODEL_CARD.md and 'Bring real weights' in the "
            "README"
        )


def provenance_extras(
    domain: str | None,
    thresholds: Mapping[str, float] | None,
    input_size: int | None = None,
) -> dict[str, Any]:
    """The metadata entries for ``domain``, ``thresholds`` and ``input_size`` (empty ones
    left out)."""
    out: dict[str, Any] = {}
    size = check_input_size(input_size)
    if size:
        out[INPUT_SIZE_KEY] = size
    if domain:
        out[DOMAIN_KEY] = domain
    checked = check_thresholds(thresholds)
    if checked:
        out[THRESHOLDS_KEY] = checked
    return out
