"""`dsflash infer` end to end: real image and video files in, every output checked."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dsflash_ros.cli import main
from dsflash_ros.model.dsflash import build_model, save_model
from dsflash_ros.offline.graph_picture import graph_image
from dsflash_ros.offline.inputs import unique_names
from dsflash_ros.offline.scene_graph_json import SceneGraphValidationError, validate_scene_graph
from dsflash_ros.runtime.result import SceneGraphResult

H, W = 120, 160
VIDEO_FRAMES = 12
LOW = [
    "--score-threshold", "0", "--overlap-threshold", "0", "--relation-threshold", "0",
    "--max-objects", "6", "--max-relations", "12", "--alternatives", "2",
]  # fmt: skip


def _scene(seed: int) -> np.ndarray:
    """A textured background with a few filled shapes (BGR, as cv2 writes it)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((H, W, 3)) * 255).astype(np.uint8), (5, 5), 0)
    for _ in range(4):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(10, W - 40)), int(rng.integers(10, H - 40))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + 35, y + 30), colour, -1)
        else:
            cv2.circle(img, (x + 15, y + 15), 18, colour, -1)
    return img


def _write_video(path: Path) -> Path:
    for fourcc, ext in (("mp4v", ".mp4"), ("MJPG", ".avi")):
        out = path.with_suffix(ext)
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*fourcc), 10.0, (W, H))
        if writer.isOpened():
            base = _scene(99)
            for i in range(VIDEO_FRAMES):
                frame = base.copy()
                cv2.circle(frame, (15 + 10 * i, H // 2), 12, (255, 255, 255), -1)
                writer.write(frame)
            writer.release()
            return out
        writer.release()
    pytest.skip("this OpenCV build cannot write any test video")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("infer")
    model = save_model(root / "tiny.safetensors", build_model("tiny", seed=0))
    (root / "shelf").mkdir()
    (root / "desk").mkdir()
    cv2.imwrite(str(root / "shelf" / "scene.png"), _scene(1))
    (root / "shelf" / "notes.txt").write_text("not an image: folders keep image files only")
    cv2.imwrite(str(root / "desk" / "scene.png"), _scene(3))  # same stem, other folder
    video = _write_video(root / "clip")
    out = root / "out"
    argv = ["infer", str(root / "shelf"), str(root / "desk" / "scene.png"), str(video)]
    argv += ["--out", str(out), "--model", str(model), "--every", "4", "--max-frames", "2"]
    code = main([*argv, *LOW, "--quiet"])
    return {"code": code, "out": out, "root": root, "video": video}


def test_exit_code_and_image_outputs(run: dict) -> None:
    assert run["code"] == 0
    out = run["out"]
    for name in ("shelf_scene", "desk_scene"):
        for suffix in (".json", "_panoptic.png", "_overlay.png", "_graph.png"):
            assert (out / f"{name}{suffix}").is_file(), f"{name}{suffix} missing"
    assert not (out / "scene.json").exists()  # the clashing stems were disambiguated
    assert not list(out.glob("notes*"))


def test_json_validates_and_has_a_graph(run: dict) -> None:
    docs = [
        json.loads((run["out"] / f"{n}.json").read_text()) for n in ("shelf_scene", "desk_scene")
    ]
    for doc in docs:
        validate_scene_graph(doc)
        assert (doc["image"]["width"], doc["image"]["height"]) == (W, H)
        assert doc["model"]["id"].startswith("dsflash-tiny-")
        assert doc["objects"], "low thresholds must give objects"
        for r in doc["relations"]:
            assert len(r["alternatives"]) == 2
    assert sum(len(d["relations"]) for d in docs) > 0


def test_overlay_and_graph_images(run: dict) -> None:
    out = run["out"]
    overlay = cv2.imread(str(out / "shelf_scene_overlay.png"))
    assert overlay.shape == (H, W, 3)
    source = cv2.imread(str(run["root"] / "shelf" / "scene.png"))
    assert np.abs(overlay.astype(int) - source).sum() > 0  # something was drawn
    graph = cv2.imread(str(out / "shelf_scene_graph.png"))
    assert graph is not None and graph.shape[0] > 200 and graph.shape[1] > 200
    assert graph.std() > 5  # not a blank page


def test_panoptic_png_round_trips_to_json_ids(run: dict) -> None:
    for name in ("shelf_scene", "desk_scene"):
        doc = json.loads((run["out"] / f"{name}.json").read_text())
        assert doc["panoptic_png"] == f"{name}_panoptic.png"
        ids = cv2.imread(str(run["out"] / doc["panoptic_png"]), cv2.IMREAD_UNCHANGED)
        assert ids.dtype == np.uint16 and ids.shape == (H, W)
        assert set(np.unique(ids).tolist()) - {0} == {o["id"] for o in doc["objects"]}
        for o in doc["objects"]:
            ys, xs = np.nonzero(ids == o["id"])
            assert o["area"] == len(xs)
            x0, y0 = int(xs.min()), int(ys.min())
            assert o["bbox"] == [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


def test_video_outputs(run: dict) -> None:
    out, stem = run["out"], run["video"].stem
    lines = (out / f"{stem}.jsonl").read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d["frame"] for d in docs] == [0, 4]  # --every 4 --max-frames 2
    for d in docs:
        validate_scene_graph(d)
        assert d["source"] == run["video"].name
    assert docs[1]["timestamp_ms"] == pytest.approx(400.0, abs=1.0)
    videos = [p for p in out.iterdir() if p.name.startswith(f"{stem}_overlay.")]
    assert len(videos) == 1
    cap = cv2.VideoCapture(str(videos[0]))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 2 and frames[0].shape == (H, W, 3)
    assert (out / f"{stem}_graph.png").is_file()


def test_validator_rejects_broken_documents(run: dict) -> None:
    doc = json.loads((run["out"] / "shelf_scene.json").read_text())
    validate_scene_graph(doc)
    assert doc["relations"], "zero thresholds: the seeded random model reports relations"

    def broken(change) -> list[str]:
        bad = json.loads(json.dumps(doc))
        change(bad)
        with pytest.raises(SceneGraphValidationError) as info:
            validate_scene_graph(bad)
        return info.value.errors

    assert "missing field 'objects'" in broken(lambda d: d.pop("objects"))[0]
    assert "expected 'dsflash.scene_graph'" in broken(lambda d: d.update(schema="x"))[0]
    assert "above the maximum" in broken(lambda d: d["relations"][0].update(score=1.5))[0]
    assert "unknown field 'colour'" in broken(lambda d: d["objects"][0].update(colour=1))[0]
    assert "expected integer" in broken(lambda d: d["objects"][0].update(id=True))[0]
    assert "no object with id 999" in broken(lambda d: d["relations"][0].update(object=999))[0]
    assert "exceeds" in broken(lambda d: d["objects"][0].update(bbox=[150, 0, 20, 5]))[0]


def test_unique_names() -> None:
    paths = [
        Path("a/img.png"),
        Path("b/img.png"),
        Path("c/x.mp4"),
        Path("x.png"),
        Path("a/img.jpg"),
    ]
    names = unique_names(paths)
    assert len(set(names)) == len(names)
    assert names[:2] == ["a_img", "b_img"]
    assert names[4] == "a_img_2"


def test_graph_picture_without_relations() -> None:
    empty = np.zeros(0, np.int64)
    result = SceneGraphResult(
        panoptic=np.ones((H, W), np.uint16),
        object_ids=np.array([1], np.uint16),
        class_ids=np.array([0]),
        scores=np.array([0.9], np.float32),
        boxes_xywh=np.array([[0, 0, W, H]]),
        areas=np.array([H * W]),
        centroids=np.array([[W / 2, H / 2]], np.float32),
        relation_subjects=empty.astype(np.uint16),
        relation_objects=empty.astype(np.uint16),
        relation_predicates=empty,
        relation_scores=empty.astype(np.float32),
        class_names=["table"],
        is_thing_table=[True],
        predicate_names=["on"],
    )
    picture = graph_image(result)
    assert picture.shape == (300, 600, 3)  # the small "no relations" card
    assert (picture < 200).any()  # it carries text


@pytest.mark.parametrize("native", [True, False])
def test_infer_says_which_precision_auto_chose_and_why(
    run: dict, native: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default precision is auto; `dsflash infer` prints what it resolved to and why
    (the CPU's bf16 support is injected, not read from this machine)."""
    from dsflash_ros.runtime import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "cpu_has_native_bf16", lambda: native)
    image = run["root"] / "shelf" / "scene.png"
    model = run["root"] / "tiny.safetensors"
    out = run["root"] / f"auto_{native}"
    assert main(["infer", str(image), "--out", str(out), "--model", str(model), *LOW]) == 0
    err = capsys.readouterr().err
    if native:
        assert "torch on cpu (bf16) [auto: this CPU computes bf16 natively" in err
    else:
        assert "torch on cpu (fp32) [auto: this CPU has no native bf16" in err
