"""Every user error of `dsflash infer` / `dsflash model` gives exit code 2 and one line that
says what is wrong (no traceback)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dsflash_ros.cli import main
from dsflash_ros.model.config import BackboneConfig, HeadConfig, ModelConfig
from dsflash_ros.model.dsflash import build_model, save_model

from ..conftest import micro_backbone_config

LABELS = ["person", "cup", "table-merged", "wall-other-merged", "widget"]


def _backbone_cfg(hidden: int = 64, labels: int = len(LABELS)) -> BackboneConfig:
    return micro_backbone_config(
        hidden_size=hidden, intermediate_size=2 * hidden, num_queries=6, num_labels=labels
    )


def _small_config(hidden: int = 64, labels: int = len(LABELS)) -> ModelConfig:
    """A model small enough to build in milliseconds (64 px input)."""
    names = (LABELS + [f"extra{i}" for i in range(labels)])[:labels]
    return ModelConfig(
        name=f"small-{hidden}",
        backbone=_backbone_cfg(hidden, labels),
        head=HeadConfig(
            hidden_size=32,
            num_layers=1,
            num_heads=2,
            ffn_size=64,
            pool=2,
            num_predicates=3,
            classifier_hidden=32,
        ),
        class_names=names,
        is_thing=[True] * labels,
        predicate_names=["on", "near", "holding"],
    )


@pytest.fixture
def hf(tmp_path: Path, write_hf_eomt) -> Path:
    """An HF-format EoMT-DINOv3 folder of the small backbone (LABELS as its classes)."""
    write_hf_eomt(tmp_path / "hf", _backbone_cfg(), LABELS)
    return tmp_path / "hf"


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    command = " ".join(argv[:2]) if argv[0] == "model" else argv[0]  # nested: "model info"
    assert line.startswith(f"dsflash {command}: error: ")
    return line


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dsflash_ros.model.dsflash import DSFlash

    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    return save_model(path, DSFlash(_small_config()))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "ok.png"
    cv2.imwrite(str(path), np.full((48, 64, 3), 90, np.uint8))
    return path


# ----------------------------------------------------------------------------- infer


def test_unreadable_image(tmp_path: Path, small_model: Path, capsys) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a PNG file" * 10)
    line = _error(
        ["infer", str(bad), "--out", str(tmp_path / "o"), "--model", str(small_model)], capsys
    )
    assert "cannot read image" in line and "broken.png" in line
    assert not (tmp_path / "o").exists()  # failed before writing anything


def test_unsupported_video_codec(tmp_path: Path, small_model: Path, capsys) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    line = _error(
        ["infer", str(bad), "--out", str(tmp_path / "o"), "--model", str(small_model)], capsys
    )
    assert "video" in line and "clip.mp4" in line
    assert "codec is not supported" in line and "ffmpeg" in line


def test_unknown_file_type(tmp_path: Path, small_model: Path, capsys) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    line = _error(
        ["infer", str(bad), "--out", str(tmp_path / "o"), "--model", str(small_model)], capsys
    )
    assert "neither a readable image" in line


def test_empty_folder(tmp_path: Path, small_model: Path, capsys) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "readme.md").write_text("no images here")
    line = _error(
        ["infer", str(folder), "--out", str(tmp_path / "o"), "--model", str(small_model)], capsys
    )
    assert "contains no images" in line and "photos" in line


def test_missing_input(tmp_path: Path, small_model: Path, capsys) -> None:
    line = _error(["infer", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")], capsys)
    assert "input not found" in line and "nope.jpg" in line


def test_missing_model_file(tmp_path: Path, image: Path, capsys) -> None:
    missing = tmp_path / "missing.safetensors"
    line = _error(
        ["infer", str(image), "--out", str(tmp_path / "o"), "--model", str(missing)], capsys
    )
    assert "model file not found" in line and "missing.safetensors" in line


def test_missing_default_model(tmp_path: Path, image: Path, capsys, monkeypatch) -> None:
    """$DSFLASH_MODEL pointing nowhere is blamed, not the embedded model."""
    monkeypatch.setenv("DSFLASH_MODEL", str(tmp_path / "gone.safetensors"))
    line = _error(["infer", str(image), "--out", str(tmp_path / "o")], capsys)
    assert "model file not found" in line and "gone.safetensors" in line
    assert "from $DSFLASH_MODEL" in line


def test_cuda_requested_without_cuda(
    tmp_path: Path, image: Path, small_model: Path, capsys
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = ["infer", str(image), "--out", str(tmp_path / "o"), "--model", str(small_model)]
    line = _error([*argv, "--device", "cuda"], capsys)
    assert "CUDA is not available" in line and "cpu" in line


def test_bad_numbers_are_usage_errors(tmp_path: Path, image: Path, capsys) -> None:
    for extra in (
        ["--every", "0"],
        ["--score-threshold", "1.5"],
        ["--max-objects", "0"],  # the node's range is [1, 1000]: the same everywhere
        ["--max-objects", "1001"],
        ["--alternatives", "1001"],  # the model's own predicate count is checked at load
        ["--max-relations", "-1"],
    ):
        with pytest.raises(SystemExit) as info:
            main(["infer", str(image), "--out", str(tmp_path), *extra])
        assert info.value.code == 2
        assert "must be" in capsys.readouterr().err


def test_limits_are_one_definition() -> None:
    """Node parameters, PipelineOptions and the CLI flags use the same table."""
    from dsflash_ros.commands._common import THRESHOLDS
    from dsflash_ros.limits import OPTION, RANGES
    from dsflash_ros.ros.params import BY_NAME, MODEL_VALUE
    from dsflash_ros.runtime.pipeline import PipelineOptions

    for name, (lo, hi) in RANGES.items():
        # the node's threshold parameters also accept MODEL_VALUE: "the model's recommendation"
        node_lo = MODEL_VALUE if OPTION[name].model_recommends else lo
        assert BY_NAME[name].range == (node_lo, hi), name
        step = 1 if isinstance(hi, int) else 0.01
        with pytest.raises(ValueError, match=name):
            PipelineOptions(**{name: hi + step}).validate()
        PipelineOptions(**{name: hi}).validate()
    assert set(THRESHOLDS) <= set(RANGES)


def test_bad_out_is_found_before_the_model_loads(tmp_path: Path, image: Path, capsys) -> None:
    taken = tmp_path / "a_file"
    taken.write_text("")
    missing_model = str(tmp_path / "not_loaded.safetensors")
    line = _error(["infer", str(image), "--out", str(taken), "--model", missing_model], capsys)
    assert "--out" in line and "not a folder" in line


def test_eval_checks_data_and_out_first(tmp_path: Path, capsys) -> None:
    line = _error(["eval", str(tmp_path / "nodata")], capsys)
    assert "dataset not found" in line and "nodata" in line and "psg.json" in line
    fixture = Path(__file__).parents[1] / "fixtures" / "psg_mini" / "psg" / "psg.json"
    taken = tmp_path / "a_file"
    taken.write_text("")
    missing_model = str(tmp_path / "not_loaded.safetensors")
    line = _error(["eval", str(fixture), "--out", str(taken), "--model", missing_model], capsys)
    assert "--out" in line and "not a folder" in line


def test_one_corrupt_file_does_not_abort_the_batch(tmp_path: Path, small_model: Path, capsys):
    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(folder / name), np.full((40, 56, 3), 120, np.uint8))
    whole = (folder / "a.png").read_bytes()
    (folder / "b.png").write_bytes(whole[: len(whole) // 2])  # valid header, cut-off data
    out = tmp_path / "o"
    code = main(["infer", str(folder), "--out", str(out), "--model", str(small_model), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    (skipped,) = [ln for ln in err.splitlines() if "skipped:" in ln]
    assert "b.png" in skipped and "cannot read image" in skipped
    assert "1 of 3 input(s) skipped" in err
    assert (out / "a.json").is_file() and (out / "c.json").is_file()
    assert not (out / "b.json").exists()


def test_infer_applies_the_pixel_limit(tmp_path: Path, small_model: Path, capsys) -> None:
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.zeros((100, 120, 3), np.uint8))
    argv = ["infer", str(big), "--out", str(tmp_path / "o"), "--model", str(small_model)]
    line = _error([*argv, "--max-pixels", "5000"], capsys)
    assert "image too large (120x100" in line and "--max-pixels 0" in line
    huge = tmp_path / "huge.png"  # header says 8000x8000: refused without decoding
    data = bytearray(big.read_bytes())
    data[16:24] = (8000).to_bytes(4, "big") * 2
    huge.write_bytes(bytes(data))
    line = _error(["infer", str(huge), "--out", str(tmp_path / "o")], capsys)
    assert "image too large (8000x8000 = 64.0 MP > 40 MP" in line
    assert "needs about 3.1 GB of memory" in line  # the peak RSS measured at that size
    assert main([*argv, "--max-pixels", "0", "--quiet"]) == 0  # lifted
    assert (tmp_path / "o" / "big.json").is_file()


# ----------------------------------------------------------------------------- model


def _convert(hf: Path, head: Path, out: Path) -> list[str]:
    return ["model", "convert", "--hf-eomt", str(hf), "--head", str(head), "--out", str(out)]


def test_convert_model_preset_mismatch(tmp_path: Path, hf: Path, capsys) -> None:
    from dsflash_ros.model.dsflash import DSFlash

    head = save_model(tmp_path / "wide.safetensors", DSFlash(_small_config(hidden=96)))
    line = _error(_convert(hf, head, tmp_path / "out.safetensors"), capsys)
    assert "model/preset mismatch" in line and "wide.safetensors" in line
    assert "hidden_size 96 vs 64" in line
    assert not (tmp_path / "out.safetensors").exists()


def test_convert_tiny_preset_head_on_small_backbone(tmp_path: Path, hf: Path, capsys) -> None:
    head = save_model(tmp_path / "tiny.safetensors", build_model("tiny", seed=0))
    line = _error(_convert(hf, head, tmp_path / "o.safetensors"), capsys)
    assert "model/preset mismatch" in line and "'dsflash-tiny'" in line
    assert "image_size 320 vs 64" in line


def test_convert_class_count_mismatch(tmp_path: Path, hf: Path, capsys) -> None:
    from dsflash_ros.model.dsflash import DSFlash

    head = save_model(tmp_path / "seven.safetensors", DSFlash(_small_config(labels=7)))
    line = _error(_convert(hf, head, tmp_path / "o.safetensors"), capsys)
    assert "class-count mismatch" in line
    assert "7 classes" in line and "predicts 5" in line


def test_convert_class_count_mismatch_in_training_metadata(
    tmp_path: Path, hf: Path, capsys
) -> None:
    from dsflash_ros.model.dsflash import DSFlash

    head = save_model(tmp_path / "h.safetensors", DSFlash(_small_config()), {"num_classes": 9})
    line = _error(_convert(hf, head, tmp_path / "o.safetensors"), capsys)
    assert "class-count mismatch" in line and "training metadata" in line


def test_convert_missing_files(tmp_path: Path, small_model: Path, hf: Path, capsys) -> None:
    out = str(tmp_path / "o.safetensors")
    line = _error(["model", "convert", "--hf-eomt", str(tmp_path / "nohf"), "--out", out], capsys)
    assert "directory not found" in line and "nohf" in line
    line = _error(_convert(hf, tmp_path / "nohead.safetensors", Path(out)), capsys)
    assert "head checkpoint not found" in line
    (hf / "model.safetensors").unlink()
    line = _error(["model", "convert", "--hf-eomt", str(hf), "--out", out], capsys)
    assert "cannot load the EoMT model" in line and "model.safetensors" in line


def test_model_info_missing_file(tmp_path: Path, capsys) -> None:
    line = _error(["model", "info", str(tmp_path / "none.safetensors")], capsys)
    assert "not found" in line and "none.safetensors" in line


def test_model_info_not_a_checkpoint(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x00" * 64)
    line = _error(["model", "info", str(bad)], capsys)
    assert "junk.safetensors" in line and "not a readable safetensors file" in line


def test_library_runtime_errors_keep_their_traceback() -> None:
    """Our own RuntimeError subclasses are one-line user errors; any other RuntimeError (a
    torch failure) is a bug and must not be hidden behind a one-line exit 2."""
    from dsflash_ros.cli import is_user_error
    from dsflash_ros.runtime.backends import BackendError
    from dsflash_ros.runtime.export import ExportError

    assert is_user_error(BackendError("no CUDA")) and is_user_error(ExportError("stale"))
    assert is_user_error(ValueError("bad")) and is_user_error(FileNotFoundError("gone"))
    assert not is_user_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_user_error(KeyError("x"))
    try:
        torch.zeros(2) @ torch.zeros(3)
    except RuntimeError as e:
        assert not is_user_error(e)
