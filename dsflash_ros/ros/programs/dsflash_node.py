"""``dsflash_node``: the DSFlash node as a process (``ros2 run dsflash_ros dsflash_node`` or
``python -m dsflash_ros.ros.programs.dsflash_node --ros-args ...``).

Tunes Fast DDS for large frames (``fastdds``) and the GIL's switch interval (below), starts
:class:`DSFlashNode` (configured and active at once with ``autostart``) and spins it until
Ctrl-C or SIGTERM (``process``).
"""

from __future__ import annotations

import os
import sys

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.logging import LoggingSeverity

from dsflash_ros.ros import fastdds, process
from dsflash_ros.ros import params as P
from dsflash_ros.ros.node import DSFlashNode

# The executor thread runs stretches of Python (wait sets, callbacks, taking a frame) while
# the workers are in torch calls; a worker back from one waits for the GIL until its holder
# is asked to let go, after the switch interval (5 ms by default). At 1 ms that wait is
# shorter; the node's fps on 2 cores changed by less than the machine's noise (a few %), and
# the bare pipeline, which has no executor, not at all.
GIL_SWITCH_INTERVAL_S = 0.001

USAGE = """\
usage: dsflash_node [-h] [--ros-args -p NAME:=VALUE ... -r FROM:=TO ...]

DSFlash lifecycle node: sensor_msgs/Image on image_raw (or CompressedImage on
image_raw/compressed) in, dsflash_ros/SceneGraph on scene_graph out, plus
panoptic/image_raw, label_info, debug/overlay, debug/markers and /diagnostics.
With use_depth:=true also depth/image_raw (aligned depth) and camera_info in: each
object then carries its 3D position and size (SceneObject.has_position).

examples:
  dsflash_node --ros-args -p device:=cpu -r image_raw:=/camera/image_raw \\
      -r image_raw/compressed:=/camera/image_raw/compressed
  dsflash_node --ros-args --params-file config/dsflash.yaml -r __ns:=/cam0
  dsflash_node --ros-args -p qos_overrides./image_raw.subscription.reliability:=reliable

Input QoS: keep-last 1; reliability follows the publishers unless
qos_overrides.<topic>.subscription.reliability is reliable or best_effort.
Environment: DSFLASH_MODEL (default model file), DSFLASH_TUNE_FASTDDS=0 (keep the
Fast DDS transports as configured).

parameters (-p NAME:=VALUE):
"""


def usage() -> str:
    """The ``--help`` text: how to start the node, and every parameter with its default."""
    lines = [USAGE]
    for spec in P.SPECS:
        allowed = (
            ", ".join(spec.choices)
            if spec.choices
            else (f"[{spec.range[0]}, {spec.range[1]}]" if spec.range else "")
        )
        lines.append(f"  {spec.name} (default {spec.default!r}{'; ' + allowed if allowed else ''})")
        lines.append(f"      {spec.description} ({spec.kind.value})")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or SIGTERM (``autostart`` true: configured and active at
    once); a stop asked for during start-up ends it quietly too (see ``process``)."""
    argv = sys.argv if args is None else args
    own = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in own or "--help" in own:
        print(usage())
        return 0
    return process.run(lambda: _run(argv))


def _run(argv: list[str]) -> int:
    tuning = fastdds.tune(os.environ)  # before rclpy creates the DDS participant
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    # a stop in the middle of these would leave half-made objects (their destructors print
    # tracebacks); they take well under a second, the model loads later (start)
    with process.signals_held():
        rclpy.init(args=argv)
        executor = SingleThreadedExecutor()
        node = DSFlashNode()
    process.on_stop(lambda: node.get_logger().set_level(LoggingSeverity.FATAL))
    line, warn = fastdds.report(tuning, node.context.get_domain_id())
    if line:
        (node.get_logger().warning if warn else node.get_logger().info)(line)
    executor.add_node(node)
    if node.get_parameter("autostart").value and not node.start() and not process.stop_requested():
        node.get_logger().error(
            "autostart failed; the node stays up unconfigured: fix the parameters, then "
            "trigger configure/activate via its lifecycle services"
        )
    spin_until_shutdown(node, executor)
    return 0


def spin_until_shutdown(node: DSFlashNode, executor: SingleThreadedExecutor | None = None) -> None:
    """Spin ``node`` until Ctrl-C or an external shutdown, then release the model, destroy
    the node and shut rclpy down (the process's whole life after start-up)."""
    if executor is None:
        executor = SingleThreadedExecutor()
        executor.add_node(node)
    process.spin(node, executor, release=node.stop_and_release)


if __name__ == "__main__":
    sys.exit(main())
