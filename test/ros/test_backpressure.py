"""A camera far faster than the model: the node keeps only the newest frame.

Publishes at ~10x the node's processing rate for a few seconds and checks that the node's
memory and the answer latency stay flat, that answered frames are always newer than the
previous ones and close to the newest published, and that /diagnostics counts the drops
and every frame published.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

import node_harness as H


def test_fast_camera_gets_newest_frames_without_backlog(tmp_path):
    model = H.make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    # one worker: the warm-up's one-at-a-time round trip is then the node's processing rate
    # (with two, the node answered twice as fast as measured, and the camera, meant to run at
    # ~10x, ran at 2x: 1103 published, 561 answered)
    params = {**H.node_params(model), "workers": 1}
    with H.NodeProcess(tmp_path, params=params) as node:
        peer = H.Peer(name="backpressure_peer")
        try:
            for seed in range(3):  # warm up: discovery, first-call allocations
                peer.request_good(seed=seed)
            # measure the processing rate, then publish at ~10x of it
            t0 = time.monotonic()
            for seed in range(3, 6):
                peer.request_good(seed=seed)
            per_frame = (time.monotonic() - t0) / 3
            period = max(per_frame / 10, 0.002)
            msgs = [peer.image_msg(H.rgb_image(64, 80, s), 0, "fast") for s in range(8)]
            peer.graphs.clear()
            rss = [node.rss_mb()]
            published: list[float] = []
            end = time.monotonic() + 6.0
            i = 0
            while time.monotonic() < end:
                t = time.time()
                msg = msgs[i % len(msgs)]
                msg.header.stamp = H.stamp(t)
                peer.publish(msg)
                published.append(t)
                i += 1
                if i % max(1, int(1.0 / period)) == 0:
                    rss.append(node.rss_mb())
                time.sleep(period)
            last_published = published[-1]
            # the newest frame is never dropped: its graph ends the run
            H.wait_until(lambda: peer.graph_for(H.stamp(last_published)), 60, "the last graph")
            rss.append(node.rss_mb())
            got = [(H.stamp_s(g.header.stamp), recv) for g, recv in peer.graphs]
        finally:
            peer.close()

        # ~10x intended; the rate is measured during the warm-up, so a machine that gets
        # busier or quieter afterwards shifts the ratio (seen 2.5x under load): ask for 2x
        assert len(published) > 2 * len(got) > 0, (len(published), len(got))
        stamps = np.array([s for s, _ in got])
        assert np.all(np.diff(stamps) > 0), "answers went back in time (an old frame)"
        latency = np.array([recv - s for s, recv in got])
        # no backlog: the latency of the last answers is no worse than of the first ones
        third = max(1, len(latency) // 3)
        bound = 4 * per_frame + 0.5
        assert latency[-third:].mean() < latency[:third].mean() + bound, latency
        assert latency.max() < 2 * bound + 1.0, latency
        # the newest frame is served: the last answer is one of the last published frames
        assert last_published - stamps[-1] < 3 * per_frame + 0.5
        # memory does not grow with the number of frames published
        assert max(rss) - rss[0] < 150, rss
        assert rss[-1] - rss[len(rss) // 2] < 50, rss

        peer = H.Peer(name="backpressure_diag")
        try:
            status = peer.wait_counter(node.fqn, "frames_dropped", 1, timeout=15)
        finally:
            peer.close()
        received = int(status["frames_received"])
        assert int(status["frames_dropped"]) + int(status["frames_processed"]) <= received
        # the node takes only the frames it can process, yet counts every frame published
        # (from the publisher's sequence numbers): the camera's rate stays visible
        assert received >= 0.9 * len(published), (received, len(published))
        assert status["input_gated"] == "true"
        assert float(status["latency.queue_wait.p95_ms"]) < 1000 * (per_frame + 0.5)
