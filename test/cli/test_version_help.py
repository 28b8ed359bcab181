"""``dsflash --version`` names the package version and the embedded model; every
sub-command's help shows the defaults of its options."""

from __future__ import annotations

import argparse

import pytest

from dsflash_ros import __version__
from dsflash_ros.cli import COMMANDS, build_parser, main
from dsflash_ros.commands._help import DefaultsHelpFormatter


def test_version_names_package_and_embedded_model(capsys, monkeypatch):
    from dsflash_ros.commands.model import describe_checkpoint
    from dsflash_ros.runtime.pipeline import default_model_path

    monkeypatch.delenv("DSFLASH_MODEL", raising=False)
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    out = capsys.readouterr().out.strip()
    model_id = describe_checkpoint(default_model_path())["model_id"]
    assert out == f"dsflash_ros {__version__}; embedded model {model_id}"


def test_version_with_a_missing_model_says_so(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DSFLASH_MODEL", str(tmp_path / "nothing.safetensors"))
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "none: no model file at" in capsys.readouterr().out


def _parsers(parser: argparse.ArgumentParser, path: str):
    """``parser`` and every nested sub-command parser, with their command paths."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_with_a_default_shows_it(name, capsys):
    parser = build_parser([name])
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    formatter = DefaultsHelpFormatter("dsflash")
    for path, command in _parsers(sub.choices[name], name):
        assert command.formatter_class is DefaultsHelpFormatter, path
        with pytest.raises(SystemExit):
            command.parse_args(["--help"])
        capsys.readouterr()
        for action in command._actions:
            if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
                continue
            shown = formatter._get_help_string(action)
            assert "default" in shown, f"{path} {action.option_strings[0]}: {shown!r}"
