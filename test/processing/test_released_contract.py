"""Spec tests for the released Cosmos3-Nano-Policy-DROID contract (values from shared/reference/cosmos3_facts.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmos3_ros.engine.sampler import SamplingSettings, schedule_table
from cosmos3_ros.processing.actions import flip_gripper, to_model_space, to_physical
from cosmos3_ros.processing.predictor import ActionPredictor
from cosmos3_ros.processing.profiles import RELEASED_DROID_POLICY
from cosmos3_ros.processing.request import ActionRequest

STATE = [0.1, -0.6, 0.05, -2.2, 0.0, 1.6, 0.8, 0.25]


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    return ActionPredictor.load(tiny_checkpoint, "released_droid_policy")


def test_native_schedule_for_four_steps_shift_five():
    sigmas, timesteps = schedule_table(SamplingSettings(steps=4, guidance=3.0, schedule="native", flow_shift=5.0))
    np.testing.assert_allclose(sigmas, [0.9998, 0.937, 0.833, 0.625], atol=6e-4)
    assert timesteps == [999, 937, 833, 624]


def test_released_profile_defaults():
    p = RELEASED_DROID_POLICY
    assert (p.steps, p.guidance, p.guidance_steps, p.flow_shift, p.schedule) == (4, 3.0, None, 5.0, "native")
    assert (p.chunk, p.fps, p.raw_action_dim, p.domain_id, p.action_rows) == (32, 15.0, 8, 8, 33)
    assert p.action_start_offset == 0 and p.use_state and p.gripper_dims == (7,)
    assert p.negative_prompt == "" and not p.use_system_prompt and p.prompt_format == "plain"


def test_540x640_becomes_544x736_canvas_and_33x40_latent_with_3093_generation_tokens(predictor, droid_cameras):
    generation, _ = predictor.generation_request(ActionRequest(task="open the drawer", cameras=droid_cameras,
                                                               state=STATE))
    assert tuple(generation.pixels.shape) == (3, 1, 544, 736)  # only the observation frame is encoded
    assert generation.content_hw == (540, 640)
    layout = predictor.generator.layout_for(generation)
    assert layout.latent_thw == (9, 33, 40)
    assert layout.patch_grid == (9, 17, 20)
    assert layout.num_vision_tokens == 3060 and layout.action_rows == 33


def test_canvas_pads_bottom_and_right_by_reflection(predictor, droid_cameras):
    generation, _ = predictor.generation_request(ActionRequest(task="t", cameras=droid_cameras, state=STATE))
    frame = generation.pixels[:, 0]
    # 4 rows and 96 columns of padding mirror the content without repeating the edge row/column
    torch.testing.assert_close(frame[:, 540], frame[:, 538])
    torch.testing.assert_close(frame[:, :, 640], frame[:, :, 638])


def test_exact_prompt_string(predictor, droid_cameras):
    _, context = predictor.generation_request(ActionRequest(task="put the marker in the cup", cameras=droid_cameras,
                                                            state=STATE))
    assert context["caption"] == (
        "put the marker in the cup. This video contains concatenated views from multiple camera perspectives. "
        "The top row is from the wrist-mounted camera. The bottom row contains two horizontally concatenated "
        "third-person perspective views of the scene from opposite sides, with the robot visible. "
        "The video is 2.0 seconds long and is of 15 FPS. This video is of 544x736 resolution."
    )


def test_task_ending_with_period_is_not_doubled(predictor, droid_cameras):
    _, context = predictor.generation_request(ActionRequest(task="open the drawer. \n ", cameras=droid_cameras,
                                                            state=STATE))
    assert context["caption"].startswith("open the drawer. This video contains")


def test_only_trailing_whitespace_is_stripped_from_the_task_as_nvidias_server_does(predictor, droid_cameras):
    _, context = predictor.generation_request(ActionRequest(task="  open the drawer  ", cameras=droid_cameras,
                                                            state=STATE))
    assert context["caption"].startswith("  open the drawer. This video contains")


def test_unconditional_prompt_is_the_empty_user_turn(predictor, droid_cameras):
    generation, _ = predictor.generation_request(ActionRequest(task="t", cameras=droid_cameras, state=STATE))
    text = predictor.tokenizer._tok.decode(list(generation.uncond_ids))
    assert text == "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<|im_end|><|vision_start|>"


def test_state_row_is_clean_at_offset_zero_with_flipped_gripper(predictor, droid_cameras):
    generation, _ = predictor.generation_request(ActionRequest(task="t", cameras=droid_cameras, state=STATE))
    assert generation.clean_rows == (0,) and generation.action_start_offset == 0
    row = generation.clean_actions[0].numpy()
    np.testing.assert_allclose(row[:7], STATE[:7], rtol=0, atol=1e-7)
    assert row[7] == pytest.approx(1.0 - STATE[7])
    assert not row[8:].any()


def test_action_rows_line_up_with_pixel_frames_from_zero(predictor, droid_cameras):
    generation, _ = predictor.generation_request(ActionRequest(task="t", cameras=droid_cameras, state=STATE))
    layout = predictor.generator.layout_for(generation)
    from cosmos3_ros.engine.layout import PositionConfig

    positions = layout.gen_positions(100, PositionConfig.from_model_config(predictor.generator.transformer.config))
    action_t = positions[0, layout.num_vision_tokens:]
    vision_t = positions[0, : layout.num_vision_tokens : layout.tokens_per_frame]
    media = 100 + 15000
    np.testing.assert_allclose(action_t.numpy() - media, 0.4 * np.arange(33), atol=2e-3)  # row i <-> pixel frame i
    np.testing.assert_allclose(vision_t.numpy() - media, 1.6 * np.arange(9), atol=2e-3)  # latent f <-> pixel 4f


def test_state_row_survives_denoising_and_output_drops_it(predictor, droid_cameras):
    request = ActionRequest(task="t", cameras=droid_cameras, state=STATE)
    generation, context = predictor.generation_request(request)
    result = predictor.generator.generate(generation)
    # A clean row gets zero velocity, so UniPC's update is x * (sigma_next / sigma) + x0 * (1 - sigma_next / sigma)
    # with x0 = x: an identity in exact arithmetic, but each step rounds, and how depends on the CPU's fused
    # multiply-add and vector kernels. Up to a few ulp (~2.4e-7 at |x| ~ 2) after 4 steps; 1e-6 bounds that.
    np.testing.assert_allclose(result.action_latents[0].numpy(), generation.clean_actions[0].numpy(),
                               rtol=0, atol=1e-6)
    assert not result.action_latents[:, 8:].any()  # pad channels stay zero
    actions = predictor.physical_actions(result, context)
    assert actions.shape == (32, 8)
    # gripper = 1 - model value, clamped to [0, 1] (the documented 0 open .. 1 closed range)
    np.testing.assert_allclose(actions[:, 7], np.clip(1.0 - result.action_latents[1:, 7].numpy(), 0, 1), atol=1e-7)
    assert actions[:, 7].min() >= 0.0 and actions[:, 7].max() <= 1.0


def test_gripper_flip_round_trip():
    physical = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9]], dtype=np.float32)
    model = to_model_space(physical, gripper_dims=(7,), normalization=None, stats=None, model_width=64)
    assert model.shape == (1, 64) and model[0, 7] == pytest.approx(0.1)
    back = to_physical(model, raw_action_dim=8, gripper_dims=(7,), normalization=None, stats=None,
                       binarize_gripper=False)
    np.testing.assert_allclose(back, physical, atol=1e-7)
    np.testing.assert_array_equal(flip_gripper(flip_gripper(physical, (7,)), (7,)), physical)


def test_binarized_gripper_is_zero_or_one():
    model = np.zeros((3, 64), dtype=np.float32)
    model[:, 7] = [0.2, 0.5, 0.9]  # model space: 1 - g
    out = to_physical(model, raw_action_dim=8, gripper_dims=(7,), normalization=None, stats=None,
                      binarize_gripper=True)
    assert out[:, 7].tolist() == [1.0, 0.0, 0.0]


def test_missing_state_is_a_clear_error(predictor, droid_cameras):
    from cosmos3_ros.errors import InputError

    with pytest.raises(InputError, match="needs the robot state"):
        predictor.generation_request(ActionRequest(task="t", cameras=droid_cameras))


def test_state_of_wrong_width_is_a_clear_error(predictor, droid_cameras):
    from cosmos3_ros.errors import InputError

    with pytest.raises(InputError, match="state: 7 columns; expected 8"):
        predictor.generation_request(ActionRequest(task="t", cameras=droid_cameras, state=STATE[:7]))


def test_warm_up_runs_a_request_of_the_profile_shapes(tiny_checkpoint):
    predictor = ActionPredictor.load(tiny_checkpoint, "released_droid_policy", overrides={"chunk": 4, "steps": 1})
    cache = predictor.generator.text_cache
    assert predictor.warm_up() > 0
    assert cache.misses == 2  # the warm-up prompt and the pinned empty prompt went through the text tower


def test_warm_up_is_skipped_when_the_input_size_is_unknown(tiny_checkpoint):
    predictor = ActionPredictor.load(tiny_checkpoint, "base")
    assert predictor.warm_up() is None


def test_guidance_interval_runs_cfg_only_on_timesteps_inside_it():
    settings = SamplingSettings(steps=4, guidance=3.0, guidance_interval=(960, 1001))
    _, timesteps = schedule_table(settings)
    assert [settings.uses_cfg(i, t) for i, t in enumerate(timesteps)] == [True, False, False, False]
    assert not SamplingSettings(steps=4, guidance=1.0).uses_cfg(0, 999)


def test_edge_checkpoints_declare_json_prompts_and_the_guidance_interval(tmp_path):
    from cosmos3_ros.engine.tiny_checkpoint import make_tiny_checkpoint

    edge = ActionPredictor.load(make_tiny_checkpoint(tmp_path / "edge", seed=2, variant="edge"),
                                "released_droid_policy")
    assert edge.profile.guidance_interval == (960, 1001) and edge.profile.prompt_format == "json"
    assert RELEASED_DROID_POLICY.guidance_interval is None  # Nano: CFG on every step


def test_edge_policy_runs_with_cfg_on_the_first_step_only(tmp_path, droid_cameras):
    from cosmos3_ros.engine.tiny_checkpoint import make_tiny_checkpoint

    edge = ActionPredictor.load(make_tiny_checkpoint(tmp_path / "edge", seed=2, variant="edge"),
                                "released_droid_policy", overrides={"chunk": 4})
    generation, _ = edge.generation_request(ActionRequest(task="t", cameras=droid_cameras, state=STATE))
    calls = []
    original = edge.generator._make_evaluator

    def spy(*args, **kwargs):
        evaluate = original(*args, **kwargs)

        def wrapped(vision, action, timestep, cfg):
            calls.append((timestep, cfg))
            return evaluate(vision, action, timestep, cfg)

        return wrapped

    edge.generator._make_evaluator = spy
    edge.generator.generate(generation)
    assert calls == [(999, True), (937, False), (833, False), (624, False)]
