"""16-bit ROS image encodings (rgb16, bgr16, rgba16, bgra16, mono16) keep their high byte, from real CDR bytes."""

import numpy as np
import pytest
from ros_messages import image_msg

from cosmos3_ros.runtime.image_decoding import image_to_rgb

RNG = np.random.default_rng(5)
WIDE = RNG.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
EXPECTED = (WIDE >> 8).astype(np.uint8)
ORDER = {"rgb16": [0, 1, 2], "bgr16": [2, 1, 0], "rgba16": [0, 1, 2, 0], "bgra16": [2, 1, 0, 0]}


@pytest.mark.parametrize("big_endian", [0, 1])
@pytest.mark.parametrize("encoding", sorted(ORDER))
def test_colour_16_bit_encodings_scale_to_8_bits(encoding, big_endian):
    pixels = WIDE[:, :, ORDER[encoding]]  # the 4th channel (alpha) is any value; it is dropped
    data = pixels.astype(">u2" if big_endian else "<u2").tobytes()
    channels = len(ORDER[encoding])
    msg = image_msg(EXPECTED, 1, encoding, data=data, step=7 * channels * 2, is_bigendian=big_endian)
    out = image_to_rgb(msg)
    np.testing.assert_array_equal(out, EXPECTED)  # integer shifts: exact by construction
    assert (out == 255).mean() < 0.05  # scaled, not clipped (clipping would make almost every pixel 255)


def test_padded_rows_of_a_16_bit_image_are_skipped():
    data = np.concatenate([WIDE.astype("<u2").view(np.uint8).reshape(5, -1), np.full((5, 6), 0xAB, np.uint8)],
                          axis=1).tobytes()
    msg = image_msg(EXPECTED, 1, "rgb16", data=data, step=7 * 6 + 6)
    np.testing.assert_array_equal(image_to_rgb(msg), EXPECTED)
