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
    (np.zeros((4, 4, 2)), r"expected \[H, W\]"), (np.full((4, 4, 3), 3.0), "expected \\[0, 1\\]"),
    (np.full((4, 4, 3), np.nan), "non-finite"), (np.full((4, 4, 3), 300, np.int32), "expected 0..255"),
    ("missing.png", "does not exist"), (3, "unsupported type int"),
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


def test_half_size_fast_path_equals_bilinear_interpolation():
    from cosmos3_ros.processing.images import _halve_uint8

    image = RNG.integers(0, 256, size=(360, 640, 3), dtype=np.uint8)
    t = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    expected = torch.nn.functional.interpolate(t, size=(180, 320), mode="bilinear", align_corners=False)
    expected = expected[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(_halve_uint8(image), expected)
