"""The node with default parameters on the base profile publishes diffusers' actions, through real CDR bytes.

The tiny checkpoint declares what diffusers writes by default (system prompt on, native flow schedule off,
Karras scheduler config). Every sampling parameter keeps its sentinel, so the node must take the checkpoint's
declarations; its ``ActionChunk`` must equal ``Cosmos3OmniPipeline.from_pretrained`` on the same folder and seed
within 1e-4 (fp32; the two order their float arithmetic differently). All modes and all declaration combinations
are covered through the node's model loader in ``test/engine/test_declared_defaults_parity.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from ros_messages import FACTORY, Recorder, image_msg, string_msg

from cosmos3_ros.runtime.action_chunk import action_chunk_to_array
from cosmos3_ros.runtime.node_core import PolicyNodeCore, load_action_model
from cosmos3_ros.runtime.parameters import resolve_parameters

pytestmark = pytest.mark.slow
TASK = "pick up the red cube"


def test_node_default_parameters_match_diffusers(tiny_checkpoint):
    from diffusers import Cosmos3OmniPipeline
    from diffusers.pipelines.cosmos.pipeline_cosmos3_omni import CosmosActionCondition

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, size=(256, 320, 3), dtype=np.uint8)  # sides multiples of 16: no diffusers resize
    params = {"checkpoint": str(tiny_checkpoint), "profile": "base", "device": "cpu",
              "camera_topics": ["/camera/image_raw"]}
    model = load_action_model(resolve_parameters(params))
    publish = Recorder()
    now = [1_700_000_000.02]
    core = PolicyNodeCore(model, params, clock=lambda: now[0], publish=publish, factory=FACTORY)
    callbacks = {s.topic: s.callback for s in core.subscriptions}
    try:
        callbacks["task"](string_msg(TASK))
        callbacks["/camera/image_raw"](image_msg(frame, 1_700_000_000_000_000_000, "rgb8"))
        assert core.on_timer() == "submitted"
        chunk = publish.wait_for("action_chunk", 1, timeout=600)[0]
    finally:
        assert core.shutdown(60)
    ours = action_chunk_to_array(chunk)

    pipeline = Cosmos3OmniPipeline.from_pretrained(tiny_checkpoint, torch_dtype=torch.float32)
    condition = CosmosActionCondition(mode="policy", chunk_size=16, domain_name="droid_lerobot", resolution_tier=480,
                                      image=Image.fromarray(frame), view_point="ego_view")
    theirs = pipeline(prompt=TASK, action=condition, num_inference_steps=30, guidance_scale=1.0, fps=15.0,
                      output_type="latent", enable_safety_check=False, generator=torch.Generator().manual_seed(0))
    expected = theirs.action[0].numpy()
    assert ours.shape == (16, 10) and np.abs(expected).max() > 0.01
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
