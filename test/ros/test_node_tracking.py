"""Two processes: a dsflash_node with a scripted model, and this test publishing a frame
sequence. Track ids persist while the per-frame ids swap; one scripted relation change
gives exactly one 'started' and one 'ended' event on scene_graph/events (header = the
deciding frame's); tracking:=false at run time gives per-frame graphs again."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

import node_harness as H

from dsflash_ros.msg import ObjectEvent, RelationEvent, SceneGraphEvents
from dsflash_ros.ros.node_tracking import EVENTS_QOS

SCRIPT = Path(__file__).with_name("tracking_node_peer.py")
COMMAND = [sys.executable, str(SCRIPT), "--ros-args"]
FRAMES = 16  # the script reports "holding" for frames 5..10


def _frame(k: int) -> np.ndarray:
    rgb = np.zeros((48, 80, 3), np.uint8)
    rgb[0, 0, 0] = k
    return rgb


class EventLog:
    """The ``scene_graph/events`` messages a peer receives (its executor thread appends)."""

    def __init__(self, peer: H.Peer) -> None:
        self._lock = threading.Lock()
        self._messages: list[SceneGraphEvents] = []
        peer.node.create_subscription(
            SceneGraphEvents, "scene_graph/events", self._on_message, EVENTS_QOS
        )

    def _on_message(self, msg: SceneGraphEvents) -> None:
        with self._lock:
            self._messages.append(msg)

    def messages(self) -> list[SceneGraphEvents]:
        with self._lock:
            return list(self._messages)

    def at(self, sec: int) -> list[SceneGraphEvents]:
        """The messages whose header stamp (the deciding frame's) is ``sec`` seconds."""
        return [m for m in self.messages() if m.header.stamp.sec == sec]


@pytest.fixture
def tracking_node(tmp_path) -> Iterator[tuple[H.NodeProcess, H.Peer, EventLog]]:
    """The scripted node tracking with events after 2 frames on / off (no smoothing), and a
    peer listening to its graphs and events."""
    params = {
        "track_min_hits": 2,
        "event_on_frames": 2,
        "event_off_frames": 2,
        "relation_smoothing": 0.0,
        "publish_overlay": False,
        "diagnostics_period": 5.0,
    }
    with H.NodeProcess(tmp_path, params=params, command=COMMAND) as node:
        peer = H.Peer()
        try:
            yield node, peer, EventLog(peer)
        finally:
            peer.close()


def test_track_ids_persist_and_one_relation_change_gives_two_events(tracking_node):
    node, peer, events = tracking_node
    graphs = [peer.request(peer.image_msg(_frame(k), 100.0 + k)) for k in range(FRAMES)]
    by_class = [{o.class_name: o for o in g.objects} for g in graphs]
    assert {o.track_id for o in graphs[0].objects} == {0}  # not confirmed yet
    person = {m["person"].track_id for m in by_class[1:]}
    cup = {m["cup"].track_id for m in by_class[1:]}
    assert len(person) == 1 and len(cup) == 1 and person != cup and 0 not in person | cup
    assert {m["person"].id for m in by_class} == {1, 2}  # per-frame ids did swap
    rel = graphs[7].relations[0]
    assert (rel.subject_track_id, rel.object_track_id) == (person.pop(), cup.pop())

    H.wait_until(lambda: len(events.messages()) >= 3, 10.0, "3 event messages")
    got = events.messages()
    rel_events = [(m.header.stamp.sec, e) for m in got for e in m.relation_events]
    assert [(s, e.type) for s, e in rel_events] == [
        (106, RelationEvent.STARTED),  # on at 5 and 6 (event_on_frames 2)
        (112, RelationEvent.ENDED),  # off at 11 and 12
    ]
    assert all(e.predicate == "holding" and e.subject_class == "person" for _, e in rel_events)
    obj = sorted((m.header.stamp.sec, e.type, e.class_name) for m in got for e in m.object_events)
    assert obj == [
        (101, ObjectEvent.APPEARED, "cup"),
        (101, ObjectEvent.APPEARED, "person"),
    ]

    assert peer.set_params(node.fqn, tracking=False)[0].successful
    g = peer.request(peer.image_msg(_frame(3), 200.0))
    assert [o.track_id for o in g.objects] == [0, 0]
    assert [(r.subject_track_id, r.object_track_id) for r in g.relations] == []


def test_two_workers_publish_in_arrival_order_and_keep_the_tracks(tmp_path):
    """workers:=2 with even frames slow: the odd frames computed meanwhile overtake them, yet
    the graphs come out in stamp order, tracked as one sequence."""
    params = {
        "workers": 2,
        "track_min_hits": 2,
        "relation_smoothing": 0.0,
        "publish_overlay": False,
        "diagnostics_period": 5.0,
    }
    env = {"DSFLASH_TEST_SLOW_EVEN_S": "0.25"}
    with H.NodeProcess(tmp_path, params=params, command=COMMAND, env=env) as node:
        peer = H.Peer()
        try:
            peer.request(peer.image_msg(_frame(0), 100.0))  # discovery, first frame
            for k in range(1, FRAMES):
                peer.publish(peer.image_msg(_frame(k), 100.0 + k))
                time.sleep(0.06)
            last = peer.image_msg(_frame(FRAMES - 1), 100.0 + FRAMES - 1).header.stamp
            H.wait_until(lambda: peer.graph_for(last), 20.0, "the last frame's graph")
            with peer._lock:
                graphs = [g for g, _ in peer.graphs]
            stamps = [H.stamp_s(g.header.stamp) for g in graphs]
            assert stamps == sorted(set(stamps)), stamps
            assert len(stamps) >= 6, stamps  # some frames are dropped (newest wins)
            odd_after_even = any(
                int(a) % 2 == 0 and int(b) == int(a) + 1 for a, b in itertools.pairwise(stamps)
            )
            assert odd_after_even, stamps  # a slow frame and the fast one after it both ran
            person = {o.track_id for g in graphs[2:] for o in g.objects if o.class_name == "person"}
            assert len(person) == 1 and 0 not in person
            assert "2 frame(s) at once" in node.log()
        finally:
            peer.close()


def test_tracking_restart_closes_open_tracks_and_never_reuses_ids(tracking_node):
    """tracking:=false closes every open track with events on the next frame (the planner
    holds none forever); after tracking:=true, and after a new configure, the new tracks get
    ids never given before."""
    node, peer, events = tracking_node
    # frames 0..7: both objects appear, "holding" starts (frames 5 and 6)
    graphs = [peer.request(peer.image_msg(_frame(k), 100.0 + k)) for k in range(8)]
    first = {o.track_id for o in graphs[-1].objects}
    assert len(first) == 2 and 0 not in first
    H.wait_until(lambda: events.at(106), 10.0, "the 'started' event")

    assert peer.set_params(node.fqn, tracking=False)[0].successful
    peer.request(peer.image_msg(_frame(8), 200.0))
    closing = H.wait_until(lambda: events.at(200), 10.0, "the closing events")
    objs = sorted((e.type, e.track_id) for m in closing for e in m.object_events)
    assert objs == sorted((ObjectEvent.DISAPPEARED, t) for t in first)
    rels = [(e.type, e.predicate) for m in closing for e in m.relation_events]
    assert rels == [(RelationEvent.ENDED, "holding")]

    assert peer.set_params(node.fqn, tracking=True)[0].successful
    again = [peer.request(peer.image_msg(_frame(k), 300.0 + k)) for k in range(3)]
    second = {o.track_id for o in again[-1].objects}
    assert len(second) == 2 and not second & first and 0 not in second

    # a new configure closes the tracks too, and ids still continue
    for transition in (4, 2, 1, 3):  # deactivate, cleanup, configure, activate
        assert peer.lifecycle(node.fqn, transition)
    # each transition says what it did, in one line
    assert node.log().count("inactive: no longer listening on /image_raw") == 1
    assert node.log().count("unconfigured: model released") == 1
    graphs = [peer.request(peer.image_msg(_frame(k), 400.0 + k)) for k in range(3)]
    closed = {e.track_id for m in events.at(400) for e in m.object_events}
    assert closed == second
    third = {o.track_id for o in graphs[-1].objects}
    assert len(third) == 2 and not third & (first | second) and 0 not in third
