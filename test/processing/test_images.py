"""Image inputs, camera composition and the tier canvas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3_ros.errors import InputError
from cosmos3_ros.processing.images import canvas_size, compose_droid_views, select_frames, to_canvas, to_rgb_uint8

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, size=(36, 48, 3), dtype=np.uint8)


@pytest.mark.parametrize("convert", [
    lambda a, p: p, lambda a, p: Image.fromarray(a), lambda a, p: a, lambda a, p: a.astype(np.float32) / 255.0,
    lambda a, p: torch.from_numpy(a).permute(2, 0, 1).float() / 255.0,
    lambda a, p: torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1.0,
])
def test_every_accepted_input_type_decodes_to_the_same_pixels(tmp_path, convert):
    path = tmp_path / "x.png"
    Image.fromarray(IMAGE).save(path)
    np.testing.assert_array_equal(to_rgb_uint8(convert(IMAGE, path)), IMAGE)


def test_mono_and_rgba_become_rgb():
    assert to_rgb_uint8(IMAGE[:, :, 0]).shape == (36, 48, 3)
    rgba = np.concatenate([IMAGE, np.full((36, 48, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgb_uint8(rgba), IMAGE)


@pytest.mark.parametrize(("value", "message"), [
    (np.zeros((16, 16, 2)), r"expected \[H, W\]"), (np.full((16, 16, 3), 3.0), "expected \\[0, 1\\]"),
    (np.full((16, 16, 3), np.nan), "non-finite"), (np.full((16, 16, 3), 300, np.int32), "expected 0..255"),
    ("missing.png", "does not exist"), (3, "unsupported type int"),
    (np.zeros((1, 1, 3), np.uint8), "image is 1x1; expected at least 16x16"),
])
def test_bad_images_are_named(value, message):
    with pytest.raises(InputError, match=message):
        to_rgb_uint8(value)


def test_droid_composition_puts_wrist_on_top_and_halves_the_exteriors():
    wrist = np.full((360, 640, 3), 10, np.uint8)
    left = np.full((360, 640, 3), 100, np.uint8)
    right = np.full((360, 640, 3), 200, np.uint8)
    composed = compose_droid_views(wrist, left, right)
    assert composed.shape == (540, 640, 3)
    assert (composed[:360] == 10).all() and (composed[360:, :320] == 100).all() and (composed[360:, 320:] == 200).all()


def test_bucket_choice_by_aspect_ratio():
    assert canvas_size(540, 640, 480) == (544, 736)
    assert canvas_size(480, 640, 256) == (256, 320)
    assert canvas_size(720, 1280, 480) == (480, 832)


def test_canvas_never_upscales_and_pads_with_edge_when_padding_is_large():
    video = to_canvas([IMAGE], 256)  # 36x48 content on a 256x320 canvas: pads far larger than content
    assert video.content_hw == (36, 48) and video.canvas_hw == (256, 320)
    frame = video.pixels[:, 0]
    torch.testing.assert_close(frame[:, 200, :48], frame[:, 35, :48])  # edge replicated
    assert frame.min() >= -1 and frame.max() <= 1


def test_canvas_downscales_large_inputs_into_the_bucket():
    big = RNG.integers(0, 256, size=(1080, 1920, 3), dtype=np.uint8)
    video = to_canvas([big], 480)
    assert video.canvas_hw == (480, 832) and video.content_hw == (468, 832)


def test_frames_of_different_sizes_are_refused():
    with pytest.raises(InputError, match="frame 1 is 24x36"):
        to_canvas([IMAGE, IMAGE[:36, :24]], 256)


def test_short_videos_repeat_the_last_frame():
    assert select_frames([1, 2], 4) == [1, 2, 2, 2]
    assert select_frames([1, 2, 3, 4, 5], 3) == [1, 2, 3]


def _bilinear(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    return torch.nn.functional.interpolate(t, size=hw, mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("size", [(360, 640), (720, 1280), (480, 640)])
def test_composite_truncates_the_bilinear_values_as_nvidias_server_does(size):
    """NVIDIA's server casts the interpolated float image with astype(np.uint8): truncation, for the exterior
    halves and for the composite's resize to 540x640. The fact pinned: output == floor(bilinear value)."""
    from cosmos3_ros.processing.images import resize_to

    rng = np.random.default_rng(1)
    wrist, ext1, ext2 = (rng.integers(0, 256, size=(*size, 3), dtype=np.uint8) for _ in range(3))
    composed = compose_droid_views(wrist, ext1, ext2)
    half = (size[0] // 2, size[1] // 2)
    exact_left = _bilinear(ext1, half)
    np.testing.assert_array_equal(composed[size[0]:, : size[1] // 2], np.floor(exact_left).astype(np.uint8))
    # rounding would differ on the pixels whose bilinear value has a fraction >= 0.5 (about half or more of them)
    rounded = np.rint(exact_left).astype(np.uint8)
    assert (rounded != composed[size[0]:, : size[1] // 2]).mean() > 0.2
    final = resize_to(composed, (540, 640))
    np.testing.assert_array_equal(final, composed if composed.shape[:2] == (540, 640)
                                  else np.floor(_bilinear(composed, (540, 640))).astype(np.uint8))


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    """A 16-bit grey PNG is scaled (high byte), not clipped to 255 as PIL's convert('RGB') would."""
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    path = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    out = to_rgb_uint8(path)
    np.testing.assert_array_equal(out[:, :, 0], (ramp >> 8).astype(np.uint8))
    assert (out == 255).mean() < 0.01
    np.testing.assert_array_equal(to_rgb_uint8(ramp), out)  # a uint16 array is scaled the same way


def test_image_pixel_budget_is_checked_from_the_header(tmp_path):
    from cosmos3_ros.processing import limits

    path = tmp_path / "huge.png"
    Image.new("L", (8000, 6000)).save(path)  # 48 MP, a few KB of compressed zeros
    assert limits.MAX_IMAGE_PIXELS < 8000 * 6000
    with pytest.raises(InputError, match=r"8000x6000 .* expected at most 40 MP"):
        to_rgb_uint8(path)
