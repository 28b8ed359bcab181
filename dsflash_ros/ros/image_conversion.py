"""numpy <-> sensor_msgs/Image and sensor_msgs/CompressedImage, without cv_bridge.

The PyPI ROS 2 wheels have no cv_bridge; where it is importable (a ROS install),
``HAVE_CV_BRIDGE`` is true and the tests prove both give identical arrays. Reading is
zero-copy: the returned array is a view of the message buffer (rows with padding are
sliced, not copied), so callers that keep it beyond the message's lifetime must copy.
"""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dsflash_ros.image_msg import (  # noqa: F401  (re-exported: the node's image API)
    ENCODINGS,
    EncodingInfo,
    ImageConversionError,
    compressed_to_rgb8,
    encode_rgb8,
    image_fields,
    image_to_numpy,
    image_to_rgb8,
)

try:  # pragma: no cover - only on machines with a ROS install
    from cv_bridge import CvBridge

    HAVE_CV_BRIDGE = True
except ImportError:
    CvBridge = None
    HAVE_CV_BRIDGE = False


def message_to_rgb8(msg: Image | CompressedImage) -> np.ndarray:
    """An (H, W, 3) RGB array from a raw or compressed camera frame, as the node reads its
    input (raw: a view of the message buffer; errors: ImageConversionError)."""
    return (compressed_to_rgb8 if isinstance(msg, CompressedImage) else image_to_rgb8)(msg)


def numpy_to_image(arr, encoding: str, header: Header | None = None) -> Image:
    """Build a sensor_msgs/Image (dense rows, native byte order) from an array."""
    fields = image_fields(arr, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = fields["height"], fields["width"]
    msg.encoding = encoding
    msg.is_bigendian = fields["is_bigendian"]
    msg.step = fields["step"]
    data = array.array("B")
    data.frombytes(fields["data"])  # one copy, into the message buffer
    msg.data = data
    return msg


def rgb8_to_compressed(
    rgb, fmt: str = "jpeg", header: Header | None = None, quality: int = 90
) -> CompressedImage:
    """Encode an (H, W, 3) RGB array as a CompressedImage (``jpeg`` or ``png``)."""
    encoded = encode_rgb8(rgb, fmt, quality)
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = fmt
    data = array.array("B")
    data.frombytes(encoded)
    msg.data = data
    return msg
