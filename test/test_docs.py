"""The README and docs/ describe the product as it is: a README a newcomer can read, links
that resolve, no diary, and every threshold default they state equal to the code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsflash_ros.limits import EVAL_OPTIONS
from dsflash_ros.model.checkpoint import read_metadata
from dsflash_ros.model.provenance import ModelFacts
from dsflash_ros.runtime.pipeline import BUILTIN_THRESHOLDS, default_model_path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = [*sorted((REPO / "docs").glob("*.md")), README, REPO / "models" / "MODEL_CARD.md"]
PARAMETERS = (REPO / "docs" / "parameters.md").read_text()

# How a diary reads; the docs say what the product is and does.
HISTORY = (
    "previous model",
    "previous session",
    "this session",
    "earlier run",
    "earlier model",
    "throw-away",
    "targets are met",
    "targets met",
    "issue's",
    "not yet redrawn",
    "until this session",
    "before the fix",
)


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 250


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_no_history(path: Path):
    text = path.read_text().lower()
    assert not [h for h in HISTORY if h in text]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path: Path):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
        assert (path.parent / target).exists(), f"{path.name}: {target}"


def _pair(pattern: str) -> tuple[float, float]:
    found = re.search(pattern, " ".join(PARAMETERS.split()))
    assert found, pattern
    return float(found.group(1)), float(found.group(2))


def test_stated_thresholds_are_the_code_s():
    """docs/parameters.md states the thresholds once: the embedded model's recommendation,
    the built-in fallback and dsflash eval's protocol."""
    recommended = ModelFacts.from_extra(read_metadata(default_model_path())).thresholds
    stated = _pair(r"embedded model recommends `score_threshold` (\d+(?:\.\d+)?) and "
                   r"`relation_threshold` (\d+(?:\.\d+)?)")  # fmt: skip
    assert stated == (recommended["score_threshold"], recommended["relation_threshold"])
    stated = _pair(r"without a recommendation: `score_threshold` (\d+(?:\.\d+)?) and "
                   r"`relation_threshold` (\d+(?:\.\d+)?)")  # fmt: skip
    assert stated == (
        BUILTIN_THRESHOLDS["score_threshold"],
        BUILTIN_THRESHOLDS["relation_threshold"],
    )
    stated = _pair(r"segments above `score_threshold` (\d+(?:\.\d+)?), every relation ranked: "
                   r"`relation_threshold` (\d+(?:\.\d+)?)")  # fmt: skip
    assert stated == (EVAL_OPTIONS["score_threshold"], EVAL_OPTIONS["relation_threshold"])


def test_demo_excerpt_and_prose_name_the_demo_s_folder():
    text = README.read_text()
    excerpt = text[text.index("```\nframe 1:") :]
    excerpt = excerpt[: excerpt.index("```", 4)]
    folders = set(re.findall(r"(\S+)/last_overlay\.png", excerpt))
    assert folders == {"out/demo"}, folders
    assert "`out/demo/`" in text
    demo = pytest.importorskip(
        "dsflash_ros.ros.programs.demo", reason="rclpy or the messages missing"
    )
    assert str(demo.parse_args([]).out) == "out/demo"


def _defaults(command: str) -> dict:
    from dsflash_ros.cli import build_parser

    parser = build_parser([command])
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    required = ["x", "--out", "o"] if command == "infer" else []
    return vars(sub.choices[command].parse_args(required))


def test_other_stated_defaults_are_the_code_s():
    """Defaults the prose states besides the generated table."""
    from dsflash_ros.limits import MAX_PIXELS
    from dsflash_ros.progress import DEFAULT_INTERVAL
    from dsflash_ros.ros.params import BY_NAME

    performance = " ".join((REPO / "docs" / "performance.md").read_text().split())
    bench = _defaults("bench")
    assert f"`--ros-rounds` ({bench['ros_rounds']})" in performance
    assert f"(`--ros-warmup`, {bench['ros_warmup']:g} s)" in performance
    assert f"`--ros-seconds / --ros-rounds` ({bench['ros_seconds']:g} / " in performance
    w, h = bench["ros_size"]
    assert f"{w}×{h} rgb8, {bench['ros_rate']:g} Hz" in performance
    assert "(`--tput-seconds`)" in performance and f"for {bench['tput_seconds']:g} s" in performance
    offline = " ".join((REPO / "docs" / "offline.md").read_text().split())
    assert f"default: the node's {MAX_PIXELS / 1e6:g} MP limit" in offline
    assert _defaults("infer")["max_pixels"] == MAX_PIXELS
    assert f"every {DEFAULT_INTERVAL:g} s" in offline
    node = (REPO / "docs" / "node.md").read_text()
    tracking = (REPO / "docs" / "tracking.md").read_text()
    assert "`autostart:=true` (the default)" in node and BY_NAME["autostart"].default is True
    assert "`tracking:=true` (the default)" in tracking and BY_NAME["tracking"].default is True
