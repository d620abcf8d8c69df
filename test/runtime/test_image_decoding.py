"""Image / CompressedImage -> RGB, on messages decoded from real CDR bytes."""

import array
from types import SimpleNamespace

import numpy as np
import pytest
from ros_messages import compressed_msg, encode, image_msg

from cosmos3_ros.errors import InputError
from cosmos3_ros.runtime.image_decoding import compressed_image_to_rgb, image_to_rgb, ros_image_to_rgb

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_decode_to_the_same_rgb(encoding):
    out = image_to_rgb(image_msg(RGB, 1, encoding))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, RGB)


def test_mono8_is_repeated_into_three_channels():
    out = image_to_rgb(image_msg(RGB, 1, "mono8"))
    np.testing.assert_array_equal(out, np.repeat(RGB[:, :, :1], 3, axis=2))


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono8"])
def test_row_padding_in_step_is_skipped(encoding):
    msg = image_msg(RGB, 1, encoding, row_padding=5)
    assert msg.step == 7 * {"rgb8": 3, "bgra8": 4, "mono8": 1}[encoding] + 5
    expected = RGB if encoding != "mono8" else np.repeat(RGB[:, :, :1], 3, axis=2)
    np.testing.assert_array_equal(image_to_rgb(msg), expected)


@pytest.mark.parametrize("big_endian", [0, 1])
def test_mono16_honours_is_bigendian(big_endian):
    grey16 = (np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000).astype(np.uint16)
    data = grey16.astype(">u2" if big_endian else "<u2").tobytes()
    msg = image_msg(RGB, 1, "mono16", data=data, step=14, is_bigendian=big_endian)
    out = image_to_rgb(msg)
    np.testing.assert_array_equal(out[:, :, 0], (grey16 >> 8).astype(np.uint8))
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])


def test_result_does_not_alias_the_message_buffer():
    msg = image_msg(RGB, 1, "rgb8")
    out = image_to_rgb(msg)
    out[:] = 0
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


@pytest.mark.parametrize("container", [bytes, lambda b: array.array("B", b), memoryview])
def test_rclpy_style_payloads_are_accepted(container):
    msg = SimpleNamespace(height=5, width=7, step=21, encoding="rgb8", is_bigendian=0,
                          data=container(RGB.tobytes()))
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


def test_depth_encoding_is_rejected_with_a_clear_error():
    msg = image_msg(RGB, 1, "32FC1", data=bytes(5 * 7 * 4), step=28)
    with pytest.raises(InputError, match=r"camera 'wrist': encoding '32FC1' is a depth encoding; expected one of rgb8"):
        image_to_rgb(msg, "camera 'wrist'")


def test_unknown_encoding_is_rejected():
    msg = image_msg(RGB, 1, "yuv422", data=bytes(70), step=14)
    with pytest.raises(InputError, match=r"unsupported encoding 'yuv422'; expected one of rgb8, bgr8"):
        image_to_rgb(msg)


def test_data_shorter_than_step_times_height_is_rejected():
    msg = image_msg(RGB, 1, "rgb8", data=RGB.tobytes()[:-10], step=21)
    with pytest.raises(InputError, match=r"data holds 95 bytes; expected step x height = 21 x 5 = 105"):
        image_to_rgb(msg)


def test_step_smaller_than_a_row_is_rejected():
    with pytest.raises(InputError, match=r"step 20 is smaller than width x bytes per pixel = 7 x 3 = 21"):
        image_to_rgb(image_msg(RGB, 1, "rgb8", step=20))


def test_png_compressed_image_is_lossless():
    np.testing.assert_array_equal(compressed_image_to_rgb(compressed_msg(RGB, 1, "png")), RGB)


@pytest.mark.parametrize("fmt", ["jpeg", "bgr8; jpeg compressed bgr8", "rgb8; jpeg compressed bgr8", ""])
def test_jpeg_compressed_image_keeps_colours_whatever_the_format_string(fmt):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (220, 20, 20)  # red left half
    rgb[:, 8:] = (20, 20, 220)  # blue right half
    out = ros_image_to_rgb(compressed_msg(None, 1, fmt, data=encode(rgb, "jpeg")))
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 6
    assert out[8, 2, 0] > 180 and out[8, 13, 2] > 180


def test_corrupt_jpeg_is_rejected():
    data = encode(RGB, "jpeg")[:40]
    with pytest.raises(InputError, match=r"corrupt jpeg data in CompressedImage \(40 bytes\)"):
        compressed_image_to_rgb(compressed_msg(None, 1, "jpeg", data=data))


def test_bytes_that_are_neither_jpeg_nor_png_are_rejected():
    with pytest.raises(InputError, match=r"starts with 00010203, which is neither a jpeg nor a png stream"):
        compressed_image_to_rgb(compressed_msg(None, 1, "jpeg", data=bytes(range(20))))


@pytest.mark.parametrize("fmt", ["16UC1; compressedDepth png", "32FC1; png compressed"])
def test_compressed_depth_is_rejected(fmt):
    with pytest.raises(InputError, match=r"is a depth format"):
        compressed_image_to_rgb(compressed_msg(None, 1, fmt, data=encode(RGB, "png")))


def test_sixteen_bit_png_is_rejected():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4), 4000, np.uint16)).save(buf, format="PNG")
    with pytest.raises(InputError, match=r"16/32-bit, depth\?"):
        compressed_image_to_rgb(compressed_msg(None, 1, "png", data=buf.getvalue()))
