"""`dsflash infer` on ROS 2 recordings, end to end: recordings written independently of the
package (:mod:`recording_files`: messages serialized by rclpy, MCAP by the mcap writer,
sqlite3 by Python's sqlite3), the output MCAP read back with an independent reader and CDR
decoder (mcap + mcap-ros2-support, from the schemas embedded in the file)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
pytest.importorskip("mcap_ros2", reason="mcap-ros2-support not installed")

import node_harness as H
import recording_files as R
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rclpy.serialization import serialize_message
from std_msgs.msg import String

from dsflash_ros.cli import main

pytestmark = pytest.mark.ros
LOW = [
    "--score-threshold", "0", "--overlap-threshold", "0", "--relation-threshold", "0",
    "--max-objects", "4", "--quiet",
]  # fmt: skip
TOPICS = ["--topic", R.RAW_TOPIC, "--topic", R.JPEG_TOPIC]
NAMESPACES = {R.RAW_TOPIC: "/cam0", R.JPEG_TOPIC: "/cam1"}


def stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def read_output(path: Path) -> dict[str, list]:
    """topic -> [(schema name, log time, decoded message)], by an independent decoder."""
    out: dict[str, list] = defaultdict(list)
    with path.open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_summary() is not None, "no summary: the MCAP was not finished"
        assert reader.get_header().profile == "ros2"
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
            out[channel.topic].append((schema.name, message.log_time, decoded))
    return dict(out)


def panoptic(graph) -> np.ndarray:
    img = graph.panoptic
    assert img.encoding == "16UC1" and img.step == img.width * 2
    return np.frombuffer(bytes(img.data), np.uint16).reshape(img.height, img.width)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("recordings")
    model = H.make_tiny_checkpoint(root / "tiny.safetensors")
    stored = R.messages("rgb8")
    mcap = R.write_mcap(root / "run.mcap", stored)
    return {"root": root, "model": model, "mcap": mcap, "stored": stored}


@pytest.fixture(scope="module")
def mcap_run(setup: dict) -> dict:
    """The MCAP recording, both topics, every 15th frame, inputs copied."""
    out = setup["root"] / "out_mcap"
    args = ["infer", str(setup["mcap"]), "--out", str(out), "--model", str(setup["model"])]
    code = main(args + TOPICS + ["--every", "15", "--copy-input", *LOW])
    assert code == 0
    return {"out": out, "topics": read_output(out / "run_scene_graph.mcap")}


def test_without_topic_lists_image_topics(setup: dict, capsys: pytest.CaptureFixture) -> None:
    code = main(["infer", str(setup["mcap"]), "--out", str(setup["root"] / "unused")])
    captured = capsys.readouterr()
    assert code == 2
    assert f"{R.RAW_TOPIC}  Image  30 messages" in captured.out
    assert f"{R.JPEG_TOPIC}  CompressedImage  30 messages" in captured.out
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and "--topic" in errors[0]
    assert not (setup["root"] / "unused").exists()


def test_output_holds_one_graph_per_processed_frame(setup: dict, mcap_run: dict) -> None:
    topics = mcap_run["topics"]
    inputs = defaultdict(dict)  # topic -> stamp -> log time
    for m in setup["stored"]:
        inputs[m.topic][m.stamp_ns] = m.log_time
    for topic, ns in NAMESPACES.items():
        graphs = topics[f"{ns}/scene_graph"]
        assert [name for name, _, _ in graphs] == ["dsflash_ros/msg/SceneGraph"] * 2
        stamps = [stamp_ns(g.header) for _, _, g in graphs]
        assert stamps == [R.START_NS + k * R.PERIOD_NS for k in (0, 15)]
        assert [t for _, t, _ in graphs] == [inputs[topic][s] for s in stamps]  # log times
        for _, _, g in graphs:
            assert g.header.frame_id == f"{ns[1:]}_optical_frame"
            assert (g.height, g.width) == (R.H, R.W) and g.model_id.startswith("dsflash-")
            ids = panoptic(g)
            assert g.objects, "the test model finds objects"
            for o in g.objects:  # every field decoded, consistent with the mask
                assert o.area == int((ids == o.id).sum()) and o.class_name and o.track_id >= 0
                assert o.bbox.width > 0 and o.bbox.height > 0 and 0 <= o.score <= 1
                assert 0 <= o.centroid_x < R.W and 0 <= o.centroid_y < R.H
            for r in g.relations:
                assert {r.subject_id, r.object_id} <= {o.id for o in g.objects}
            assert g.total_ms > 0
        assert any(o.track_id > 0 for _, _, g in graphs for o in g.objects)  # tracked
        (labels,) = topics[f"{ns}/label_info"]
        assert labels[2].class_names and stamp_ns(labels[2].header) == stamps[0]
        overlays = topics[f"{ns}/debug/overlay"]
        assert [(o.encoding, o.height, o.width) for _, _, o in overlays] == [("rgb8", R.H, R.W)] * 2
        markers = topics[f"{ns}/debug/markers"]
        assert len(markers) == 2 and markers[0][2].markers[0].action == 3  # DELETEALL first
        copied = topics[topic]
        assert [stamp_ns(m.header) for _, _, m in copied] == stamps
    events = topics.get("/cam0/scene_graph/events", []) + topics.get("/cam1/scene_graph/events", [])
    for _, _, e in events:
        assert e.object_events or e.relation_events


def test_schemas_are_the_package_msg_files(mcap_run: dict) -> None:
    with (mcap_run["out"] / "run_scene_graph.mcap").open("rb") as f:
        schemas = {s.name: s.data.decode() for s in make_reader(f).get_summary().schemas.values()}
    text = schemas["dsflash_ros/msg/SceneGraph"]
    for line in ("uint32 track_id", "float32 centroid_y", "sensor_msgs/Image panoptic"):
        assert line in text
    assert "MSG: dsflash_ros/SceneObject" in text
    # rosbag2-style readers take the file too (rosbags: its own MCAP parser and CDR decoder)
    from rosbags.highlevel import AnyReader

    with AnyReader([mcap_run["out"] / "run_scene_graph.mcap"]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        graph = next(m for c, _, m in reader.messages() if c.topic == "/cam1/scene_graph")
        decoded = reader.deserialize(graph, "dsflash_ros/msg/SceneGraph")
        (labels,) = [c for c in reader.connections if c.topic == "/cam1/label_info"]
    assert counts["/cam0/scene_graph"] == 2 and counts["/cam1/label_info"] == 1
    (qos,) = labels.ext.offered_qos_profiles  # latched, as the node publishes it
    assert qos.durability.name == "TRANSIENT_LOCAL" and qos.reliability.name == "RELIABLE"
    assert decoded.panoptic.encoding == "16UC1"


def test_json_lines_match_the_graphs(mcap_run: dict) -> None:
    lines = (mcap_run["out"] / "run_cam0_image_raw.jsonl").read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    graphs = [g for _, _, g in mcap_run["topics"]["/cam0/scene_graph"]]
    assert [d["frame"] for d in docs] == [0, 15]
    for d, g in zip(docs, graphs):
        assert d["timestamp_ms"] == pytest.approx(stamp_ns(g.header) / 1e6)
        assert [o["id"] for o in d["objects"]] == [o.id for o in g.objects]
        assert [o["track_id"] for o in d["objects"]] == [o.track_id for o in g.objects]


def test_panoptic_equals_infer_on_the_frames_as_images(setup: dict, mcap_run: dict) -> None:
    frames = R.frames()
    folder = setup["root"] / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "raw15.png"), frames[15][..., ::-1])  # the rgb8 frame
    jpeg = cv2.imdecode(np.frombuffer(R.jpeg_bytes(frames[15]), np.uint8), cv2.IMREAD_COLOR)
    cv2.imwrite(str(folder / "jpeg15.png"), jpeg)  # the JPEG frame, as decoded
    out = setup["root"] / "out_images"
    assert (
        main(["infer", str(folder), "--out", str(out), "--model", str(setup["model"]), *LOW]) == 0
    )
    topics = mcap_run["topics"]
    for name, topic in (("raw15", "/cam0/scene_graph"), ("jpeg15", "/cam1/scene_graph")):
        expected = cv2.imread(str(out / f"{name}_panoptic.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(panoptic(topics[topic][1][2]), expected)


def test_sqlite_bag_bgr8(setup: dict, mcap_run: dict) -> None:
    bag = R.write_sqlite_bag(setup["root"] / "bag", R.messages("bgr8"))
    out = setup["root"] / "out_sqlite"
    args = ["infer", str(bag), "--out", str(out), "--model", str(setup["model"])]
    assert main(args + TOPICS + ["--every", "30", *LOW]) == 0
    topics = read_output(out / "bag_scene_graph.mcap")
    assert R.RAW_TOPIC not in topics  # no --copy-input
    for ns in NAMESPACES.values():
        (graph,) = [g for _, _, g in topics[f"{ns}/scene_graph"]]
        assert stamp_ns(graph.header) == R.START_NS
        # the same pixels (bgr8 here, rgb8 in the MCAP) give the same segments
        first = mcap_run["topics"][f"{ns}/scene_graph"][0][2]
        np.testing.assert_array_equal(panoptic(graph), panoptic(first))


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("dsflash")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_truncated_recording(setup: dict, capsys: pytest.CaptureFixture) -> None:
    data = setup["mcap"].read_bytes()
    cut = setup["root"] / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.6)])  # a recorder killed two thirds through
    out = setup["root"] / "out_cut"
    args = ["infer", str(cut), "--out", str(out), "--model", str(setup["model"])]
    code = main([*args, "--topic", R.RAW_TOPIC, "--every", "15", *LOW])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 1 and "damaged or truncated" in line and "cut_scene_graph.mcap" in line
    graphs = read_output(out / "cut_scene_graph.mcap")["/cam0/scene_graph"]
    assert [stamp_ns(g.header) for _, _, g in graphs] == [R.START_NS, R.START_NS + 15 * R.PERIOD_NS]


def test_recording_without_image_topics(setup: dict, capsys: pytest.CaptureFixture) -> None:
    from mcap.writer import Writer

    path = setup["root"] / "chatter.mcap"
    with path.open("wb") as f:
        writer = Writer(f)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        channel = writer.register_channel("/chatter", "cdr", schema)
        for i in range(3):
            data = serialize_message(String(data=f"hello {i}"))
            writer.add_message(channel, R.START_NS + i, data, R.START_NS + i)
        writer.finish()
    for extra in ([], ["--topic", "/chatter"]):
        args = ["infer", str(path), "--out", str(setup["root"] / "out_chatter"), *extra]
        code = main([*args, "--model", str(setup["model"])])
        line = _one_error_line(capsys.readouterr().err)
        assert code == 2 and "has no image topics" in line


def test_ctrl_c_leaves_a_finished_mcap(setup: dict, tmp_path: Path) -> None:
    """SIGINT to a running `dsflash infer`: exit 130 and a complete MCAP with the frames done
    (signalled once the second frame's JSON line is on disk: the first frame is complete; all
    30 frames, so that the signal comes while most are still to do)."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "dsflash_ros.cli", "infer", str(setup["mcap"]), "--out", str(out)]
    args += ["--model", str(setup["model"]), "--topic", R.JPEG_TOPIC, *LOW]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=H.sigint_as_at_a_terminal,
    )
    lines = out / "run_cam1_image_raw_compressed.jsonl"
    try:
        # stop the process the moment its second line is there, then interrupt it: however
        # fast the machine, the signal is delivered with most frames still to do
        H.wait_until(
            lambda: lines.exists() and lines.read_text().count("\n") >= 2, 120, "frames", 0.002
        )
        proc.send_signal(signal.SIGSTOP)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = lines.read_text().count("\n")
    assert proc.returncode == 130 and b"interrupted" in err and b"Traceback" not in err, (
        proc.returncode,
        done,
        err.decode(errors="replace")[-3000:],
    )
    graphs = read_output(out / "run_scene_graph.mcap")["/cam1/scene_graph"]
    assert 1 <= done - 1 <= len(graphs) <= done < R.FRAMES  # the last one may have been cut
    assert [stamp_ns(g.header) for _, _, g in graphs] == [
        R.START_NS + k * R.PERIOD_NS for k in range(len(graphs))
    ]


def test_sample_camera_plays_the_recording_to_the_node(setup: dict, tmp_path: Path) -> None:
    """Sample camera and node in their own processes: the node's graphs carry the
    recording's header stamps and frame id (the camera keeps the recorded headers)."""
    camera_cmd = [sys.executable, "-m", "dsflash_ros.ros.programs.sample_camera", "--ros-args"]
    camera_params = {"source": setup["mcap"], "topic": R.JPEG_TOPIC, "recorded_rate": True}
    camera_params["rate"] = 2.0  # ignored: the recording's own 10 Hz
    stamps = {R.START_NS + k * R.PERIOD_NS for k in range(R.FRAMES)}
    (tmp_path / "camera").mkdir()  # its own log file
    with (
        H.NodeProcess(tmp_path, "/bag", H.node_params(setup["model"])) as node,
        H.NodeProcess(tmp_path / "camera", "/bag", camera_params, command=camera_cmd) as camera,
    ):
        peer = H.Peer("/bag", name="bag_peer")
        try:
            graph = H.wait_until(lambda: peer.graphs and peer.graphs[0][0], 120, "a SceneGraph")
        finally:
            peer.close()
        assert stamp_ns(graph.header) in stamps
        assert graph.header.frame_id == "cam1_optical_frame"
        assert (graph.height, graph.width) == (R.H, R.W)
        assert "publishing" in camera.log() and "10 Hz" in camera.log()
        assert node.proc.poll() is None


@pytest.mark.parametrize("layout", ["mcap", "sqlite3", "mcap_folder", "folder_without_metadata"])
def test_frames_come_in_header_stamp_order(setup: dict, tmp_path: Path, layout: str) -> None:
    """All 30 frames of each topic, stamps increasing although frames 5 and 6 of /cam0 are
    stored swapped; every container layout lists the same topics and counts."""
    from dsflash_ros.offline.recording import Recording, decode_frame, iter_frames

    stored = setup["stored"]
    if layout == "mcap":
        path = setup["mcap"]
    elif layout == "sqlite3":
        path = R.write_sqlite_bag(tmp_path / "bag", stored)
    elif layout == "mcap_folder":  # as ros2 bag record writes it, by another writer
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        store = get_typestore(Stores.ROS2_KILTED)
        path = tmp_path / "run_0"
        with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            connections = {}
            for m in stored:
                if m.topic not in connections:
                    connections[m.topic] = writer.add_connection(
                        m.topic, m.msgtype, typestore=store
                    )
                writer.write(connections[m.topic], m.log_time, m.data)
    else:  # a killed recorder: the .mcap file, no metadata.yaml
        path = tmp_path / "killed"
        path.mkdir()
        (path / "killed_0.mcap").write_bytes(setup["mcap"].read_bytes())
    recording = Recording(path)
    topics = {t.name: t.count for t in recording.image_topics()}
    assert topics == {R.RAW_TOPIC: R.FRAMES, R.JPEG_TOPIC: R.FRAMES}
    frames = list(iter_frames(recording, [R.RAW_TOPIC, R.JPEG_TOPIC]))
    for topic in topics:
        mine = [f for f in frames if f.topic == topic]
        assert [f.index for f in mine] == list(range(R.FRAMES))
        assert [f.stamp_ns for f in mine] == [R.START_NS + k * R.PERIOD_NS for k in range(30)]
    first = decode_frame(frames[0])
    assert first.shape == (R.H, R.W, 3) and first.flags.writeable
    np.testing.assert_array_equal(first, R.frames(1)[0])


def test_output_namespaces() -> None:
    from dsflash_ros.offline.infer_recording import output_namespaces, topic_slug
    from dsflash_ros.offline.recording import TopicInfo

    image, jpeg = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
    topics = [
        TopicInfo("/cam0/image_raw", image, 1),
        TopicInfo("/cam1/image_raw/compressed", jpeg, 1),
        TopicInfo("/image_raw", image, 1),
        TopicInfo("/rig/image_rect", image, 1),
        TopicInfo("/rig/image_mono", image, 1),
    ]
    assert output_namespaces(topics) == {
        "/cam0/image_raw": "/cam0",
        "/cam1/image_raw/compressed": "/cam1",
        "/image_raw": "",
        "/rig/image_rect": "/rig/image_rect",
        "/rig/image_mono": "/rig/image_mono",
    }
    assert topic_slug("/cam1/image_raw/compressed") == "cam1_image_raw_compressed"


def test_unknown_topic_is_one_line(setup: dict, capsys: pytest.CaptureFixture) -> None:
    out = setup["root"] / "out_unknown"
    code = main(["infer", str(setup["mcap"]), "--out", str(out), "--topic", "/cam9/image_raw"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "no image topic /cam9/image_raw" in line and R.RAW_TOPIC in line
    assert not out.exists()
