"""Builders and checkpoint loading: strict keys, readable errors, model identification. Nothing is downloaded.

Checkpoints are written by the tests themselves (random weights in the official `{"model": state_dict}` format).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from efficient_sam2 import (
    CheckpointError,
    build_sam2,
    build_sam2_image_predictor,
    build_sam2_video_predictor,
    identify_checkpoint,
    load_checkpoint,
)
from efficient_sam2.build import read_state_dict
from efficient_sam2.configs import MODEL_CONFIGS, get_config
from efficient_sam2.modeling.sam2 import SAM2Model
from efficient_sam2.predictors.image import ImagePredictor
from efficient_sam2.predictors.video import VideoPredictor
from reference_oracle import randomize_

IMAGE_SIZE = 128


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random-weight SAM 2.1 tiny model and its official-format checkpoint."""
    model = SAM2Model(get_config("tiny", image_size=IMAGE_SIZE)).eval()
    randomize_(model, 0)
    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return model, path


def _fp16_checkpoint(name: str, path) -> None:
    """A random-weight checkpoint of another model (half precision keeps the file small; the values are unused)."""
    model = SAM2Model(get_config(name))
    torch.save({"model": {k: v.half() for k, v in model.state_dict().items()}}, path)


# ----------------------------------------------------------------------------------------------------- model names


def test_unknown_model_name_lists_valid_names():
    for builder in (build_sam2, build_sam2_video_predictor, build_sam2_image_predictor):
        with pytest.raises(ValueError, match="unknown model name 'sam3_huge'") as err:
            builder("sam3_huge")
        for name in MODEL_CONFIGS:
            assert name in str(err.value)


def test_unknown_override_names_list_valid_ones():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['imagesize'\]") as err:
        build_sam2("tiny", imagesize=256)
    assert "image_size" in str(err.value) and "memory_temporal_stride" in str(err.value)
    message = r"build_sam2_video_predictor\(\) got unknown option\(s\) \['fill_holes'\]"
    with pytest.raises(TypeError, match=message) as err:
        build_sam2_video_predictor("tiny", fill_holes=8)
    for valid in ("fill_hole_area", "non_overlap_masks", "image_size", "memory_temporal_stride"):
        assert valid in str(err.value)
    with pytest.raises(TypeError, match="configure the video predictor"):
        build_sam2("tiny", fill_hole_area=8)


def test_bad_override_values_and_device():
    with pytest.raises(ValueError, match="image_size must be a positive multiple of 32, got 100"):
        build_sam2("tiny", image_size=100)
    with pytest.raises(ValueError, match="fill_hole_area must be a non-negative integer"):
        build_sam2_video_predictor("tiny", weights="random", image_size=IMAGE_SIZE, fill_hole_area=-1)
    with pytest.raises(ValueError, match="invalid device 'banana'"):
        build_sam2("tiny", weights="random", image_size=IMAGE_SIZE, device="banana")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            build_sam2("tiny", weights="random", image_size=IMAGE_SIZE, device="cuda")
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        build_sam2("tiny", {"model": {}})


def test_predictor_types_and_options():
    video = build_sam2_video_predictor("tiny", weights="random", image_size=IMAGE_SIZE, non_overlap_masks=True)
    assert isinstance(video, VideoPredictor) and video.non_overlap_masks and video.fill_hole_area == 8
    assert video.model.cfg.binarize_mask_from_pts_for_mem_enc
    plain = build_sam2_video_predictor("tiny", weights="random", image_size=IMAGE_SIZE, apply_postprocessing=False,
                                       memory_temporal_stride=3)
    assert plain.fill_hole_area == 0 and plain.model.cfg.memory_temporal_stride == 3
    assert not plain.model.cfg.binarize_mask_from_pts_for_mem_enc
    assert not plain.model.cfg.dynamic_multimask_via_stability
    assert isinstance(build_sam2_image_predictor("tiny", weights="random", image_size=IMAGE_SIZE), ImagePredictor)


# ----------------------------------------------------------------------------------------------------- bad files


def test_missing_checkpoint_is_a_plain_file_not_found(tmp_path):
    path = tmp_path / "nowhere" / "sam2.1_hiera_tiny.pt"
    with pytest.raises(FileNotFoundError) as err:
        build_sam2("tiny", path, image_size=IMAGE_SIZE)
    assert type(err.value) is FileNotFoundError
    assert str(err.value) == f"checkpoint file not found: {path}"


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(CheckpointError, match=f"checkpoint path is a folder, not a file: {re.escape(str(tmp_path))}"):
        build_sam2("tiny", tmp_path, image_size=IMAGE_SIZE)


def test_corrupt_and_truncated_files(tmp_path, tiny):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match=f"could not read checkpoint {re.escape(str(garbage))}: it is not a "
                                              "PyTorch checkpoint"):
        build_sam2("tiny", garbage, image_size=IMAGE_SIZE)

    data = tiny[1].read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"could not read checkpoint .*truncated\.pt: it is a truncated or "
                                              r"damaged PyTorch file"):
        build_sam2("tiny", truncated, image_size=IMAGE_SIZE)

    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="could not read checkpoint .*: it is not a PyTorch checkpoint"):
        build_sam2("tiny", text, image_size=IMAGE_SIZE)


def test_files_that_are_not_a_dict_of_tensors(tmp_path):
    cases = {
        "list.pt": [1, 2, 3],
        "ints.pt": {"model": {"a": 1, "b": 2}},
        "mixed.pt": {"weight": torch.zeros(2), "epoch": 3},
    }
    for name, payload in cases.items():
        path = tmp_path / name
        torch.save(payload, path)
        with pytest.raises(CheckpointError, match=f"{re.escape(str(path))} is not a SAM 2 checkpoint: expected a dict"):
            build_sam2("tiny", path, image_size=IMAGE_SIZE)
    empty = tmp_path / "empty.pt"
    torch.save({}, empty)
    with pytest.raises(CheckpointError, match="its state_dict holds no tensors"):
        build_sam2("tiny", empty, image_size=IMAGE_SIZE)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "config": _Opaque()}, unsafe)
    with pytest.raises(CheckpointError, match="stores Python objects other than tensors"):
        build_sam2("tiny", unsafe, image_size=IMAGE_SIZE)


class _Opaque:
    """A Python object that a weights-only load refuses."""


def test_sam1_checkpoint_is_recognised(tmp_path):
    path = tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(4, 3, 16, 16),
                "image_encoder.blocks.0.attn.qkv.weight": torch.zeros(12, 4)}, path)
    with pytest.raises(CheckpointError, match=r"looks like a SAM 1 \(segment-anything\) checkpoint"):
        build_sam2("tiny", path, image_size=IMAGE_SIZE)


def test_checkpoint_of_another_size_is_identified(tmp_path):
    path = tmp_path / "small.pt"
    _fp16_checkpoint("sam2.1_hiera_small", path)
    with pytest.raises(CheckpointError) as err:
        build_sam2("tiny", path, image_size=IMAGE_SIZE)
    msg = str(err.value)
    assert msg.startswith(f"checkpoint {path} does not match model sam2.1_hiera_tiny:")
    # small has 16 trunk blocks, tiny 12: blocks 12..15 are unexpected and the stage layout differs
    assert re.search(r"\d+ unexpected key\(s\): .*image_encoder\.trunk\.blocks\.1[2-5]\.", msg), msg
    assert "the file looks like a sam2.1_hiera_small checkpoint: build that model instead" in msg


def test_sam2_july_checkpoint_loaded_as_sam21(tmp_path):
    july = SAM2Model(get_config("sam2_hiera_tiny", image_size=IMAGE_SIZE)).eval()
    randomize_(july, 1)
    path = tmp_path / "sam2_hiera_tiny.pt"
    torch.save({"model": july.state_dict()}, path)
    with pytest.raises(CheckpointError) as err:
        build_sam2("sam2.1_hiera_tiny", path, image_size=IMAGE_SIZE)
    msg = str(err.value)
    assert "3 missing key(s): no_obj_embed_spatial, obj_ptr_tpos_proj.bias, obj_ptr_tpos_proj.weight" in msg
    assert "unexpected" not in msg
    assert "the file looks like a sam2_hiera_tiny checkpoint" in msg
    # and the other way round: a SAM 2.1 file built as SAM 2 has those three keys too many
    path21 = tmp_path / "sam21.pt"
    _fp16_checkpoint("sam2.1_hiera_tiny", path21)
    with pytest.raises(CheckpointError, match=r"3 unexpected key\(s\): no_obj_embed_spatial, obj_ptr_tpos_proj"):
        build_sam2("sam2_hiera_tiny", path21, image_size=IMAGE_SIZE)
    # loaded as what it is, it loads strictly with the same weights
    ours = build_sam2("sam2_hiera_tiny", path, image_size=IMAGE_SIZE)
    for k, v in july.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k


def test_official_checkpoint_reproduces_its_model(tiny):
    model, path = tiny
    loaded = build_sam2("sam2.1_hiera_tiny", path, image_size=IMAGE_SIZE)
    own = loaded.state_dict()
    assert set(own) == set(model.state_dict())
    assert all(torch.equal(own[k], v) for k, v in model.state_dict().items())
    x = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = model.forward_image(x), loaded.forward_image(x)
    assert torch.equal(a.vision, b.vision) and all(torch.equal(p, q) for p, q in zip(a.high_res, b.high_res))
    assert a.vision.abs().max() > 1e-2  # not a degenerate comparison

    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    outs = []
    for pred in (ImagePredictor(model), build_sam2_image_predictor("tiny", path, image_size=IMAGE_SIZE)):
        pred.set_image(image)
        outs.append(pred.predict(point_coords=[[60, 40]], point_labels=[1], return_logits=True))
    for x_ref, x_new in zip(*outs):
        np.testing.assert_array_equal(x_ref, x_new)


def test_bare_and_ddp_prefixed_state_dicts_load(tmp_path, tiny):
    model, _ = tiny
    sd = model.state_dict()
    bare, ddp, wrapped = tmp_path / "bare.pt", tmp_path / "ddp.pt", tmp_path / "wrapped.pt"
    torch.save(sd, bare)
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, ddp)
    torch.save({"state_dict": sd, "epoch": torch.tensor(3)}, wrapped)
    target = SAM2Model(get_config("tiny", image_size=IMAGE_SIZE))
    for path in (bare, ddp, wrapped):
        assert read_state_dict(path).keys() == sd.keys()
        with torch.no_grad():
            for t in target.state_dict().values():
                t.zero_()
        load_checkpoint(target, path)
        assert all(torch.equal(target.state_dict()[k], v) for k, v in sd.items()), path
    assert isinstance(build_sam2("tiny", ddp, image_size=IMAGE_SIZE), SAM2Model)


def test_partially_renamed_checkpoint_names_missing_and_unexpected_keys(tmp_path, tiny):
    model, _ = tiny
    sd = dict(model.state_dict())
    sd["memory_encoder.out_proj.weight_renamed"] = sd.pop("memory_encoder.out_proj.weight")
    sd["no_mem_embed"] = torch.zeros(1, 1, 128)
    path = tmp_path / "edited.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as err:
        build_sam2("tiny", path, image_size=IMAGE_SIZE)
    msg = str(err.value)
    assert "1 missing key(s): memory_encoder.out_proj.weight\n" in msg
    assert "1 unexpected key(s): memory_encoder.out_proj.weight_renamed" in msg
    assert "1 shape mismatch(es) (file vs model): no_mem_embed (1, 1, 128) vs (1, 1, 256)" in msg
    # still recognisably a tiny 2.1 file, so no misleading "looks like" hint
    assert "looks like" not in msg


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_identify_checkpoint_on_every_registry_model(name):
    with torch.device("meta"):  # shapes and keys only: no memory, no initialisation cost
        sd = SAM2Model(MODEL_CONFIGS[name]).state_dict()
    assert identify_checkpoint(sd) == name
    assert identify_checkpoint({k: v for k, v in sd.items() if not k.startswith("image_encoder.trunk.")}) is None


def test_identify_checkpoint_rejects_unrelated_dicts():
    assert identify_checkpoint({}) is None
    assert identify_checkpoint({"image_encoder.trunk.pos_embed": torch.zeros(3)}) is None
