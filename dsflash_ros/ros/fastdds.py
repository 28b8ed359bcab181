"""Make large best-effort camera frames arrive over Fast DDS, and say only what is in effect.

A 640x480 rgb8 frame (0.9 MB) travels in fragments; a best-effort sample is lost as soon as
one fragment is. With stock settings fragments are lost in the publisher's 512 KB
shared-memory segment and in the kernel's default 208 KB UDP receive buffers (measured: 1 of
20 frames between two processes). The node's own participant therefore receives over UDPv4
with large socket buffers, set before rclpy creates the participant:

* **Discovery range SUBNET** (the default): ``FASTDDS_BUILTIN_TRANSPORTS=UDPv4?sockets_size=N``.
* **Discovery range LOCALHOST** (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, or
  ``ROS_LOCALHOST_ONLY=1`` with the range unset): rmw_fastrtps replaces the participant's
  transports with its own shared-memory + UDPv4 pair (default buffers), so the variable above
  has no effect. The node instead hands Fast DDS an XML default profile that does what
  rmw_fastrtps does for LOCALHOST (no multicast, unicast discovery with 127.0.0.1 as initial
  peer, up to 32 participants per host) with one UDPv4 transport restricted to 127.0.0.1 and
  large buffers, and sets the range to SYSTEM_DEFAULT so that rmw_fastrtps keeps that profile.
  The node still talks to nothing but this host.

Nothing is changed when the user configured Fast DDS (an XML profile, ``FASTDDS_BUILTIN_
TRANSPORTS``, ``RMW_FASTRTPS_USE_QOS_FROM_XML``), runs another RMW, sets ``ROS_STATIC_PEERS``
with LOCALHOST, or sets ``DSFLASH_TUNE_FASTDDS=0``. After the participant exists,
:func:`report` reads the buffers of the node's RTPS receive sockets back (``SO_RCVBUF``), so
the log states what the kernel granted, never what was merely asked for.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import stat
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from dsflash_ros.env_switch import switched_off

SOCKET_BUFFER_BYTES = 8 * 1024 * 1024  # > one 1280x720 rgb8 frame (2.8 MB) with room
LARGE_FRAME_BYTES = 1280 * 720 * 3
TUNING_SWITCH = "DSFLASH_TUNE_FASTDDS"
# any of these means the user configured Fast DDS: leave it alone
_FASTDDS_CONFIG_VARS = (
    "FASTDDS_BUILTIN_TRANSPORTS",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "RMW_FASTRTPS_USE_QOS_FROM_XML",
)
_FASTDDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
# RTPS well-known ports (spec 9.6.1.1): PB + DG * domain + offset; user-data unicast is
# d3 + PG * participant (d3 = 11, PG = 2): the sockets camera frames arrive on.
_PORT_BASE, _DOMAIN_GAIN, _USER_UNICAST, _PARTICIPANT_GAIN = 7400, 250, 11, 2

# rmw_fastrtps' LOCALHOST setup (participant.cpp) with a UDPv4 transport of our buffers
_LOCALHOST_PROFILE = """\
<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>dsflash_udp_localhost</transport_id>
        <type>UDPv4</type>
        <sendBufferSize>{size}</sendBufferSize>
        <receiveBufferSize>{size}</receiveBufferSize>
        <maxInitialPeersRange>32</maxInitialPeersRange>
        <interfaces><allowlist><interface name="127.0.0.1"/></allowlist></interfaces>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="dsflash_localhost" is_default_profile="true">
      <rtps>
        <builtin>
          <metatrafficUnicastLocatorList><locator><udpv4/></locator></metatrafficUnicastLocatorList>
          <initialPeersList>
            <locator><udpv4><address>127.0.0.1</address></udpv4></locator>
          </initialPeersList>
        </builtin>
        <userTransports><transport_id>dsflash_udp_localhost</transport_id></userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


@dataclass(frozen=True)
class Tuning:
    """What :func:`tune` did: ``applied`` False = left alone (``message`` says why)."""

    message: str | None
    applied: bool = False
    localhost: bool = False


_RANGES = ("OFF", "LOCALHOST", "SUBNET", "SYSTEM_DEFAULT")


def discovery_range(env: MutableMapping[str, str]) -> str:
    """The automatic discovery range rcl will use: ``ROS_AUTOMATIC_DISCOVERY_RANGE`` (an
    invalid value means LOCALHOST, as rcl reads it), else LOCALHOST for
    ``ROS_LOCALHOST_ONLY=1`` (the older variable: its intent), else SUBNET."""
    given = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper()
    if given:
        return given if given in _RANGES else "LOCALHOST"
    return "LOCALHOST" if env.get("ROS_LOCALHOST_ONLY", "").strip() == "1" else "SUBNET"


def tune(env: MutableMapping[str, str], cwd: Path | None = None) -> Tuning:
    """Set the node's Fast DDS transports for large frames in ``env`` (``os.environ``
    before ``rclpy.init``); see the module docstring."""
    if switched_off(env, TUNING_SWITCH):
        return Tuning(f"Fast DDS transports left as configured ({TUNING_SWITCH}=0)")
    if env.get("RMW_IMPLEMENTATION", "") not in _FASTDDS_RMWS:
        return Tuning(None)  # another middleware: its own configuration applies
    given = [v for v in _FASTDDS_CONFIG_VARS if env.get(v)]
    if given or ((cwd or Path.cwd()) / "DEFAULT_FASTDDS_PROFILES.xml").is_file():
        return Tuning(f"Fast DDS transports left as configured ({', '.join(given) or 'XML'})")
    scope = discovery_range(env)
    if scope == "OFF":
        return Tuning(None)  # no discovery: no camera to hear
    if scope != "LOCALHOST":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = f"UDPv4?sockets_size={SOCKET_BUFFER_BYTES}"
        return Tuning("", applied=True)
    if env.get("ROS_STATIC_PEERS"):
        return Tuning(
            "Fast DDS transports left as rmw_fastrtps sets them for LOCALHOST with "
            "ROS_STATIC_PEERS: large best-effort frames may be lost"
        )
    fd, path = tempfile.mkstemp(prefix="dsflash_fastdds_", suffix=".xml")
    with os.fdopen(fd, "w") as f:
        f.write(_LOCALHOST_PROFILE.format(size=SOCKET_BUFFER_BYTES))
    atexit.register(_remove, path)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = path
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"  # rmw_fastrtps keeps the profile
    env.pop("ROS_LOCALHOST_ONLY", None)  # it would force LOCALHOST again where honoured
    return Tuning("", applied=True, localhost=True)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def receive_buffers(domain_id: int) -> list[int]:
    """``SO_RCVBUF`` (as the kernel reports it: twice the granted size) of this process's
    UDP sockets bound to the RTPS user-data unicast ports of ``domain_id``."""
    base = _PORT_BASE + _DOMAIN_GAIN * domain_id + _USER_UNICAST
    sizes = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError, ValueError):
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            with socket.socket(fileno=os.dup(fd)) as s:
                if s.family != socket.AF_INET or s.type != socket.SOCK_DGRAM:
                    continue
                port = s.getsockname()[1]
                offset = port - base
                if 0 <= offset < _DOMAIN_GAIN - _USER_UNICAST and offset % _PARTICIPANT_GAIN == 0:
                    sizes.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    return sizes


def read_rmem_max(path: str = "/proc/sys/net/core/rmem_max") -> int | None:
    """The kernel's cap on socket receive buffers (None when it cannot be read)."""
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def report(tuning: Tuning, domain_id: int) -> tuple[str | None, bool]:
    """The log line for ``tuning`` once the participant exists: ``(line, is_warning)``; the
    buffers are read back from the sockets, so the line states what is in effect."""
    if not tuning.applied:
        return tuning.message, False
    sizes = receive_buffers(domain_id)
    granted = min(sizes) // 2 if sizes else 0  # the kernel reports twice the granted size
    rmem_max = read_rmem_max()
    wanted = min(SOCKET_BUFFER_BYTES, rmem_max or SOCKET_BUFFER_BYTES)
    where = "127.0.0.1 only (discovery range LOCALHOST)" if tuning.localhost else "UDPv4"
    if not sizes or granted < wanted:
        seen = f"{granted} bytes" if sizes else "no RTPS receive socket found"
        return (
            f"Fast DDS: asked for {SOCKET_BUFFER_BYTES // 2**20} MiB UDP receive buffers, "
            f"got {seen}: large best-effort frames may be lost ({TUNING_SWITCH}=0 keeps "
            "the defaults)"
        ), True
    line = (
        f"Fast DDS: receiving over {where} with {granted / 2**20:.0f} MiB socket buffers, so "
        f"that large best-effort frames arrive ({TUNING_SWITCH}=0 keeps the defaults)"
    )
    if granted < LARGE_FRAME_BYTES:
        return (
            f"{line}; net.core.rmem_max ({rmem_max} bytes) caps them below one 1280x720 "
            f"frame: raise it, e.g. `sysctl -w net.core.rmem_max={SOCKET_BUFFER_BYTES}`"
        ), True
    return line, False
