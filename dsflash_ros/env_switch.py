"""Environment switches that turn off a tuning dsflash_ros applies by default
(``DSFLASH_TUNE_MALLOC=0``, ``DSFLASH_TUNE_FASTDDS=0``): one rule for what "off" is."""

from __future__ import annotations

from collections.abc import Mapping

OFF_VALUES = ("0", "false", "no", "off")


def switched_off(env: Mapping[str, str], name: str) -> bool:
    """True when ``env[name]`` is 0, false, no or off (any case, spaces ignored)."""
    return env.get(name, "").strip().lower() in OFF_VALUES
