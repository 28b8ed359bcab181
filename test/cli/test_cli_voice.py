"""The `dsflash` command speaks with one voice: fast top-level help and version, help for a
bare call, choices and "(default: X)" everywhere, errors named after the sub-command,
output folders prepared before the work, and the thresholds in force reported."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dsflash_ros.cli import COMMANDS, build_parser, main
from dsflash_ros.limits import OPTION

_LOADED = (
    "import sys\nfrom dsflash_ros.cli import main\n"
    "try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
    "print('LOADED', sorted(m for m in ('torch', 'rclpy', 'cv2') if m in sys.modules))"
)


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []])
def test_top_level_answers_load_no_model_library(argv):
    """`dsflash --version`, `--help` and a bare `dsflash` import neither torch, rclpy nor
    OpenCV (what made them take seconds)."""
    proc = subprocess.run(
        [sys.executable, "-c", _LOADED.format(argv=argv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "LOADED []" in proc.stdout, proc.stdout + proc.stderr


def test_bare_dsflash_prints_help(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: dsflash")
    assert all(name in out for name in COMMANDS)
    assert "dsflash COMMAND --help" in out


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser([command])
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[command]


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _all_parsers(child)


def _commands() -> list[str]:
    """Every command whose options can be built here (demo needs rclpy and the messages)."""
    try:
        import rclpy  # noqa: F401

        import dsflash_ros.msg  # noqa: F401
    except ImportError:
        return [c for c in COMMANDS if c != "demo"]
    return list(COMMANDS)


@pytest.mark.parametrize("command", _commands())
def test_every_option_has_help_and_one_default_style(command):
    for parser in _all_parsers(_subparser(command)):
        text = " ".join(parser.format_help().split())  # unwrapped
        assert not re.findall(r"\(default(?!: )", text), f"{parser.prog}: {text}"
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert action.help, f"{parser.prog} {action.option_strings[0]} has no help"


def test_demo_takes_the_same_choices_as_infer():
    try:
        demo = _subparser("demo")
    except ImportError:
        pytest.skip("rclpy or the dsflash_ros messages are missing")
    infer = _subparser("infer")
    for name in ("backend", "precision"):
        (d,) = [a for a in demo._actions if a.dest == name]
        (i,) = [a for a in infer._actions if a.dest == name]
        assert tuple(d.choices) == tuple(i.choices) == OPTION[name].choices
    with pytest.raises(SystemExit):
        demo.parse_args(["--backend", "tensorflow"])


def test_eval_split_lists_all_and_matches_the_dataset():
    from dsflash_ros.commands.eval import SPLITS
    from dsflash_ros.data.psg import SPLITS as DATASET_SPLITS

    assert SPLITS == DATASET_SPLITS
    text = " ".join(_subparser("eval").format_help().split())
    assert "{train,val,test,all}" in text
    assert "fair-psgg" in text and "sgbench (IoU >= 0.5" in text
    # eval scores at its protocol's thresholds, and its help says so
    assert "(default: 0.5, the evaluation protocol's)" in text
    args = _subparser("eval").parse_args(["data"])
    assert (args.score_threshold, args.relation_threshold) == (0.5, 0.0)


def test_errors_name_the_nested_sub_command(tmp_path, capsys):
    assert main(["model", "annotate", str(tmp_path / "none.safetensors"), "--domain", "real"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsflash model annotate: error: "), err


def test_annotate_refuses_an_unknown_domain(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["model", "annotate", str(tmp_path / "m.safetensors"), "--domain", "Synthetic"])
    assert stop.value.code == 2
    assert "invalid choice: 'Synthetic'" in capsys.readouterr().err


def test_bench_json_folder_is_checked_before_the_benchmark(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["bench", "--quick", "--json", str(blocker / "b.json")]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing was measured
    assert err.startswith("dsflash bench: error: --json ") and "cannot create its folder" in err


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from dsflash_ros.model.dsflash import build_model, save_model

    return save_model(tmp_path_factory.mktemp("m") / "tiny.safetensors", build_model("tiny"))


def test_infer_prints_and_stores_the_thresholds_in_force(tmp_path, tiny_model, capsys):
    from dsflash_ros.model.config import load_preset
    from dsflash_ros.runtime.pipeline import BUILTIN_THRESHOLDS

    image = tmp_path / "scene.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(image), (rng.random((480, 640, 3)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    argv = ["infer", str(image), "--out", str(out), "--model", str(tiny_model)]
    assert main([*argv, "--score-threshold", "0.42", "--max-objects", "7"]) == 0
    err = capsys.readouterr().err
    rel = BUILTIN_THRESHOLDS["relation_threshold"]  # a model without a recommendation
    assert f"thresholds: score_threshold 0.42, relation_threshold {rel:g}, " in err
    run = json.loads((out / "run.json").read_text())
    assert run["thresholds"]["score_threshold"] == pytest.approx(0.42)
    assert run["thresholds"]["relation_threshold"] == pytest.approx(rel)
    assert run["thresholds"]["max_objects"] == 7
    assert "input_size" not in run["thresholds"]  # not a threshold: its own entry
    size = load_preset("tiny").backbone.image_size  # no recommendation: the model's own
    assert run["input_size"] == size and f" at {size} px on " in err
    assert run["model"].startswith("dsflash-tiny-")


def test_infer_output_is_ours_alone_and_counts_agree(tmp_path, tiny_model):
    """Corrupt files give our one-line reasons; libpng's and FFmpeg's own messages stay out
    of the output, and every line counts the inputs the same way."""
    rng = np.random.default_rng(1)
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), (rng.random((480, 640, 3)) * 255).astype(np.uint8))
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])  # header fine, data cut
    (tmp_path / "noise.mp4").write_bytes(rng.integers(0, 256, 5000, np.uint8).tobytes())
    inputs = [str(tmp_path / n) for n in ("good.png", "cut.png", "noise.mp4")]
    proc = subprocess.run(
        [sys.executable, "-m", "dsflash_ros.cli", "infer", *inputs, "--out", str(tmp_path / "o"),
         "--model", str(tiny_model)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "libpng" not in err and "moov atom" not in err, err
    assert err.count("dsflash infer: skipped: ") == 2
    assert ": 2 of 3 input(s) -> " in err  # the header of cut.png passes the first scan
    assert "dsflash infer: 2 of 3 input(s) skipped" in err


def test_an_onnx_export_folder_as_model_says_what_to_pass(tmp_path, capsys):
    out = tmp_path / "export"
    assert (
        main(["export", "onnx", "--preset", "tiny", "--image-size", "64", "--out", str(out)]) == 0
    )
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((480, 640, 3), np.uint8))
    capsys.readouterr()
    assert main(["infer", str(image), "--out", str(tmp_path / "o"), "--model", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is an ONNX export" in err and "--backend onnxruntime" in err
