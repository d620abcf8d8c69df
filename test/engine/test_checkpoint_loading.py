"""Loading the published layout through the real loader, and one clear error for each way a checkpoint breaks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from cosmos3_ros.engine.checkpoint import CheckpointInfo, load_transformer, load_vae
from cosmos3_ros.errors import CheckpointError, ProfileError
from cosmos3_ros.processing.predictor import ActionPredictor


@pytest.fixture
def broken(tiny_checkpoint, tmp_path) -> Path:
    """A private copy of the tiny checkpoint that a test may damage."""
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    return copy


def _shard(root: Path, key: str) -> Path:
    index = json.loads((root / "transformer" / "diffusion_pytorch_model.safetensors.index.json").read_text())
    return root / "transformer" / index["weight_map"][key]


def test_loads_without_lm_head_and_with_fp32_time_embedder(tiny_checkpoint):
    info = CheckpointInfo.read(tiny_checkpoint)
    model = load_transformer(info, "cpu", torch.bfloat16)
    assert not hasattr(model, "lm_head")
    assert "lm_head.weight" in json.loads((tiny_checkpoint / "model.safetensors.index.json").read_text())["weight_map"]
    assert model.time_embedder.linear_1.weight.dtype == torch.float32
    assert model.proj_in.weight.dtype == torch.bfloat16
    assert not any(p.is_meta for p in model.parameters()) and not any(b.is_meta for b in model.buffers())


def test_loaded_weights_equal_the_shards(tiny_checkpoint):
    info = CheckpointInfo.read(tiny_checkpoint)
    model = load_transformer(info, "cpu", torch.float32)
    key = "layers.1.self_attn.add_q_proj.weight"
    torch.testing.assert_close(model.state_dict()[key], load_file(_shard(tiny_checkpoint, key))[key], rtol=0, atol=0)


def test_vae_decoder_stays_unloaded_until_asked(tiny_checkpoint):
    vae = load_vae(CheckpointInfo.read(tiny_checkpoint), "cpu", torch.float32, with_decoder=False)
    assert all(p.is_meta for n, p in vae.named_parameters() if n.startswith("decoder."))
    assert not any(p.is_meta for n, p in vae.named_parameters() if n.startswith("encoder."))


def test_vision_encoder_is_never_read(broken):
    (broken / "vision_encoder" / "model.safetensors").write_bytes(b"not a safetensors file")
    ActionPredictor.load(broken, "released_droid_policy")


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        CheckpointInfo.read(tmp_path / "nowhere")


def test_missing_component_is_named(broken):
    shutil.rmtree(broken / "vae")
    with pytest.raises(CheckpointError, match=r"lacks \['vae'\]"):
        CheckpointInfo.read(broken)


def test_missing_tensor_is_named(broken):
    key = "layers.0.mlp.up_proj.weight"
    path = _shard(broken, key)
    tensors = load_file(path)
    del tensors[key]
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=r"lacks tensor 'layers\.0\.mlp\.up_proj\.weight'"):
        load_transformer(CheckpointInfo.read(broken), "cpu", torch.float32)


def test_misshaped_tensor_is_named_with_both_shapes(broken):
    key = "action_proj_in.bias.weight"
    path = _shard(broken, key)
    tensors = load_file(path)
    tensors[key] = torch.zeros(3, 5)
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=r"'action_proj_in\.bias\.weight'.*\[3, 5\]; expected \[32, 64\]"):
        load_transformer(CheckpointInfo.read(broken), "cpu", torch.float32)


def test_corrupt_shard_is_named(broken):
    path = _shard(broken, "embed_tokens.weight")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"{path.name}.*corrupt"):
        load_transformer(CheckpointInfo.read(broken), "cpu", torch.float32)


def test_invalid_config_json_is_named(broken):
    (broken / "transformer" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"transformer config.*not valid JSON"):
        CheckpointInfo.read(broken)


def test_non_action_checkpoint_is_refused(broken):
    config_path = broken / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["action_gen"] = False
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="action_gen=False"):
        CheckpointInfo.read(broken)


def test_profile_contradicting_checkpoint_metadata(tiny_checkpoint):
    with pytest.raises(ProfileError, match=r"raw_action_dim 7 but checkpoint\.json declares action_dim 8"):
        ActionPredictor.load(tiny_checkpoint, "released_droid_policy",
                             overrides={"raw_action_dim": 7, "gripper_dims": (6,),
                                        "dimension_names": tuple(f"j{i}" for i in range(7))})


def test_domain_outside_the_action_heads_is_refused(tiny_checkpoint):
    with pytest.raises(ProfileError, match="domain_id"):
        ActionPredictor.load(tiny_checkpoint, "base", overrides={"domain_id": 40, "raw_action_dim": 7})


def test_prompt_format_comes_from_checkpoint_metadata(tiny_checkpoint, tmp_path):
    from cosmos3_ros.engine.tiny_checkpoint import make_tiny_checkpoint

    edge = make_tiny_checkpoint(tmp_path / "edge", seed=1, variant="edge")
    assert ActionPredictor.load(edge, "released_droid_policy").profile.prompt_format == "json"
    assert ActionPredictor.load(tiny_checkpoint, "released_droid_policy").profile.prompt_format == "plain"
