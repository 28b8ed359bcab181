"""Help that shows defaults, and ``dsflash --version``.

:class:`DefaultsHelpFormatter` appends ``(default: X)`` to every option's help that has a
meaningful default (not ``None``/``False``) and does not already name it; list defaults are
shown as the comma list the option takes. :class:`VersionAction` prints the package version
and the id of the embedded default model (read from the file header, no model is built).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from dsflash_ros import __version__


class DefaultsHelpFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or isinstance(action, argparse._VersionAction | argparse._HelpAction)
            or "default" in text
        ):
            return text
        if isinstance(default, list | tuple):
            shown = ",".join(str(v) for v in default)
        else:
            shown = str(default).replace("%", "%%")
        return f"{text} (default: {shown})" if text else f"default: {shown}"


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and its nested sub-command parsers the :class:`DefaultsHelpFormatter`
    and their own name for error lines (``args._prog``, e.g. ``dsflash model annotate``)."""
    parser.formatter_class = DefaultsHelpFormatter
    parser.set_defaults(_prog=parser.prog)  # errors name the (nested) sub-command
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                show_defaults(child)


def embedded_model_id() -> str:
    """``<config name>-<12 hex of the file hash>`` of the model used when none is given
    (the id ``dsflash infer`` and the node report), or why there is none."""
    from dsflash_ros.model.files import (
        METADATA_KEY,
        default_model_path,
        file_sha12,
        safetensors_metadata,
    )

    path = default_model_path()
    origin = " (from $DSFLASH_MODEL)" if os.environ.get("DSFLASH_MODEL") else ""
    if not path.is_file():
        return f"none: no model file at {path}{origin}"
    try:
        meta = safetensors_metadata(path)
        name = json.loads(meta.get(METADATA_KEY, "{}")).get("config", {}).get("name")
    except Exception as e:  # a corrupt file must not break --version
        return f"unreadable: {path}{origin} ({e})"
    return f"{name or path.stem}-{file_sha12(path)}{origin}"


def version_text() -> str:
    return f"dsflash_ros {__version__}; embedded model {embedded_model_id()}"


class VersionAction(argparse.Action):
    """``--version``: computed only when asked (it reads the model file)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any):
        kw.setdefault("help", "show the package version and the embedded model's id, then exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(version_text(), file=sys.stdout)
        parser.exit()
