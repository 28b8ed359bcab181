"""Two cameras, two node processes in namespaces cam0 and cam1: outputs never mix."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

import node_harness as H


def test_two_namespaced_nodes_side_by_side(tmp_path):
    model = H.make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    params = H.node_params(model)
    sizes = {"cam0": (48, 64), "cam1": (72, 56)}
    with (
        H.NodeProcess(tmp_path, "/cam0", params) as node0,
        H.NodeProcess(tmp_path, "/cam1", params) as node1,
    ):
        peers = {ns: H.Peer(f"/{ns}", name=f"peer_{ns}") for ns in sizes}
        try:
            for round_ in range(2):
                for ns, (h, w) in sizes.items():
                    msg = peers[ns].image_msg(
                        H.rgb_image(h, w, round_), time.time(), frame_id=f"{ns}_optical"
                    )
                    graph = peers[ns].request(msg)
                    assert (graph.height, graph.width) == (h, w)
            for ns, (h, w) in sizes.items():
                graphs = [g for g, _ in peers[ns].graphs]
                assert graphs and all(g.header.frame_id == f"{ns}_optical" for g in graphs)
                assert all((g.height, g.width) == (h, w) for g in graphs)
                assert all(p.header.frame_id == f"{ns}_optical" for p in peers[ns].panoptic)
            # each node reports under its own name; both are on the one /diagnostics topic
            for node in (node0, node1):
                status = peers["cam0"].wait_counter(node.fqn, "frames_processed", 2)
                assert status["input_topic"] == f"{node.fqn.rsplit('/', 1)[0]}/image_raw"
        finally:
            for peer in peers.values():
                peer.close()
