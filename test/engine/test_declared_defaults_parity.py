"""Base-model contract on the default path: what the checkpoint declares is honoured unless the user says otherwise.

For each combination of ``model_index.json``'s ``default_use_system_prompt`` and ``use_native_flow_schedule``
(with the Karras scheduler config a Nano export carries), the actions (policy, inverse dynamics) and the rollout
latents (forward dynamics) of

* ``cosmos3-ros run --profile base`` with **no** sampling flags, and
* the node's model loaded from default parameters (``load_action_model``, sentinels everywhere)

equal diffusers' ``Cosmos3OmniPipeline.from_pretrained`` on the same folder, fed the same seed, within 1e-4 in
fp32 (the two implementations order their float arithmetic differently). The diffusers call gets the base
profile's own settings (chunk 16, 30 steps, no CFG, 15 fps, tier 480, seed 0) because the pipeline's call defaults
(35 steps, guidance 6, 24 fps) are not what the profile serves; the declarations are read by both sides from the
checkpoint folder.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3_ros.runtime.node_core import load_action_model
from cosmos3_ros.runtime.parameters import resolve_parameters
from cosmos3_ros.tools import cli

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4
TASK = "pick up the red cube"
CHUNK, STEPS, FPS, SEED, TIER = 16, 30, 15.0, 0, 480  # the base profile's defaults
COMBOS = [(system, native) for system in (True, False) for native in (True, False)]
MODES = ("policy", "inverse_dynamics", "forward_dynamics")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 256x320 image (sides multiples of 16: diffusers would resize others), a 17-frame video, known actions."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(256, 320, 3), dtype=np.uint8)
    frames = [np.roll(base, 6 * i, axis=1) for i in range(CHUNK + 1)]
    (folder / "video").mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / "video" / f"{i:03d}.png")
    Image.fromarray(frames[0]).save(folder / "image.png")
    known = np.linspace(-0.5, 0.5, 5 * 10, dtype=np.float32).reshape(5, 10)  # shorter than the chunk: last repeats
    (folder / "actions.json").write_text(json.dumps({"shape": [5, 10], "dtype": "float32",
                                                     "data": known.tolist()}))
    return {"folder": folder, "frames": frames, "known": known}


@pytest.fixture(scope="module", params=COMBOS, ids=lambda c: f"system_prompt={c[0]}-native_schedule={c[1]}")
def declared(request, tiny_checkpoint, tmp_path_factory):
    """The session's tiny checkpoint with ``model_index.json`` declaring one combination (other entries linked)."""
    system, native = request.param
    folder = tmp_path_factory.mktemp("declared") / "ckpt"
    folder.mkdir()
    for entry in tiny_checkpoint.iterdir():
        if entry.name != "model_index.json":
            (folder / entry.name).symlink_to(entry)
    index = json.loads((tiny_checkpoint / "model_index.json").read_text())
    assert json.loads((tiny_checkpoint / "scheduler" / "scheduler_config.json").read_text())["use_karras_sigmas"]
    index.update(default_use_system_prompt=system, use_native_flow_schedule=native)
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="module")
def components(tiny_checkpoint):
    """Transformer, VAE and tokenizer loaded once through diffusers' / transformers' own loaders."""
    from diffusers import AutoencoderKLWan, Cosmos3OmniTransformer
    from transformers import AutoTokenizer

    return {
        "transformer": Cosmos3OmniTransformer.from_pretrained(tiny_checkpoint, subfolder="transformer",
                                                              torch_dtype=torch.float32),
        "vae": AutoencoderKLWan.from_pretrained(tiny_checkpoint, subfolder="vae", torch_dtype=torch.float32),
        "text_tokenizer": AutoTokenizer.from_pretrained(tiny_checkpoint / "text_tokenizer"),
    }


def _diffusers(folder, components, mode, inputs):
    from diffusers import Cosmos3OmniPipeline
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import CosmosActionCondition

    # from_pretrained reads model_index.json (the two declarations) and scheduler/ from the folder
    pipeline = Cosmos3OmniPipeline.from_pretrained(folder, **components)
    pil = [Image.fromarray(f) for f in inputs["frames"]]
    condition = CosmosActionCondition(
        mode=mode, chunk_size=CHUNK, domain_name="droid_lerobot", resolution_tier=TIER,
        image=pil[0] if mode != "inverse_dynamics" else None, video=pil if mode == "inverse_dynamics" else None,
        raw_actions=torch.from_numpy(inputs["known"]) if mode == "forward_dynamics" else None,
        view_point="ego_view",
    )
    return pipeline(prompt=TASK, action=condition, num_inference_steps=STEPS, guidance_scale=1.0, fps=FPS,
                    output_type="latent", enable_safety_check=False, generator=torch.Generator().manual_seed(SEED))


def _observation(mode, inputs):
    folder = inputs["folder"]
    if mode == "inverse_dynamics":
        return ["--video", str(folder / "video")]
    extra = ["--action-file", str(folder / "actions.json")] if mode == "forward_dynamics" else []
    return ["--image", str(folder / "image.png"), *extra]


def _cli(folder, mode, inputs, out):
    argv = ["run", "--checkpoint", str(folder), "--profile", "base", "--mode", mode, "--prompt", TASK,
            *_observation(mode, inputs), "--no-video", "--latents", "--out", str(out)]
    assert cli.main(argv) == 0
    from safetensors.torch import load_file

    actions = np.asarray(json.loads(out.with_name(out.name + "_action.json").read_text())["data"], np.float32)
    return actions, load_file(str(out.with_name(out.name + "_latents.safetensors")))["video"]


def _node(folder, mode, inputs):
    from cosmos3_ros.processing.request import ActionRequest

    model = load_action_model(resolve_parameters({"checkpoint": str(folder), "profile": "base", "device": "cpu",
                                                  "mode": mode}))
    frames = inputs["frames"]
    request = ActionRequest(task=TASK, mode=mode, image=frames[0] if mode != "inverse_dynamics" else None,
                            video=frames if mode == "inverse_dynamics" else None,
                            actions=inputs["known"] if mode == "forward_dynamics" else None)
    prediction = model.predict(request)
    return prediction.actions, prediction.latents["video"], model.profile


@pytest.mark.parametrize("mode", MODES)
def test_default_path_matches_diffusers(declared, components, inputs, tmp_path, mode):
    theirs = _diffusers(declared, components, mode, inputs)
    cli_actions, cli_latents = _cli(declared, mode, inputs, tmp_path / "out")
    node_actions, node_latents, profile = _node(declared, mode, inputs)
    index = json.loads((declared / "model_index.json").read_text())
    assert profile.use_system_prompt == index["default_use_system_prompt"]
    assert profile.schedule == ("checkpoint_native" if index["use_native_flow_schedule"] else "checkpoint")
    if mode == "forward_dynamics":
        assert theirs.action is None  # diffusers returns no actions in forward dynamics: compare the rollout
        for latents in (cli_latents, node_latents):
            np.testing.assert_allclose(latents.numpy(), theirs.video.numpy(), atol=TOLERANCE, rtol=0)
        np.testing.assert_array_equal(cli_actions[5:], np.repeat(inputs["known"][-1:], CHUNK - 5, axis=0))
        return
    expected = theirs.action[0].numpy()
    assert cli_actions.shape == (CHUNK, 10) and np.abs(expected).max() > 0.01  # real predictions, not zeros
    np.testing.assert_allclose(cli_actions, expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(node_actions, expected, atol=TOLERANCE, rtol=0)


def test_a_value_the_user_gives_still_overrides_the_declaration(tiny_checkpoint):
    """The tiny checkpoint declares diffusers' defaults; explicit values replace them, absent ones do not."""
    from cosmos3_ros.engine.checkpoint import CheckpointInfo
    from cosmos3_ros.processing.predictor import resolve_profile

    info = CheckpointInfo.read(tiny_checkpoint)
    default = resolve_profile("base", info, {"use_system_prompt": None, "schedule": None, "steps": None})
    assert (default.use_system_prompt, default.schedule, default.steps) == (True, "checkpoint", 30)
    given = resolve_profile("base", info, {"use_system_prompt": False, "schedule": "native", "flow_shift": 5.0})
    assert (given.use_system_prompt, given.schedule, given.flow_shift) == (False, "native", 5.0)
    from cosmos3_ros.errors import ProfileError

    with pytest.raises(ProfileError, match=r"flow_shift=5\.0 applies to schedule 'native' only"):
        resolve_profile("base", info, {"flow_shift": 5.0})
