"""The tracking loop's own options: a memory stride of its own, the memories a group of objects reads, batched
memory encoding of prompt outputs. The micro model at 64 px with its bundled weights keeps this file fast."""

from __future__ import annotations

import pytest
import torch

from efficient_sam2 import build_sam2
from efficient_sam2.tracking import FrameOutput, ObjectTrack, TrackingLoop, select_memory_frames

SIZE = 64


@pytest.fixture(scope="module")
def model():
    return build_sam2("micro", image_size=SIZE).eval()


def _placeholder() -> FrameOutput:
    return FrameOutput(None, torch.zeros(1, 1), torch.zeros(1, 1))


def test_memory_stride_is_the_loops_own(model):
    cfg = model.cfg
    track = ObjectTrack(1, cond_outputs={0: _placeholder()},
                        non_cond_outputs={t: _placeholder() for t in range(1, 20)})
    assert TrackingLoop(model).memory_stride == cfg.memory_temporal_stride == 1
    loop = TrackingLoop(model, memory_stride=3)
    frames = [t for _, t, _ in loop.select(track, 20, 30, reverse=False).memories]
    expected, _, _ = select_memory_frames(20, track.cond_outputs, track.non_cond_outputs, cfg.num_maskmem, 3,
                                          cfg.max_cond_frames_in_attn)
    assert frames == [t for _, t, _ in expected] == [0, 6, 9, 12, 15, 18, 19]
    assert [t for _, t, _ in TrackingLoop(model).select(track, 20, 30, False).memories] == [0, 14, 15, 16, 17, 18,
                                                                                             19]
    assert model.cfg.memory_temporal_stride == 1  # the model's config is never touched
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="memory_stride"):
            TrackingLoop(model, memory_stride=bad)


@torch.no_grad()
def test_memory_is_what_a_step_reads_and_prompt_memories_batch(model):
    g = torch.Generator().manual_seed(0)
    n = 8
    images = torch.randn(n, 1, 3, SIZE, SIZE, generator=g)
    prompts = torch.zeros(2, 1, SIZE, SIZE)
    prompts[0, :, 8:30, 10:40] = 1
    prompts[1, :, 30:60, 20:50] = 1
    loop = TrackingLoop(model, fill_hole_area=8, memory_stride=2)
    tracks = [ObjectTrack(1), ObjectTrack(2)]

    feats = loop.encode(images[0], 0)
    outs = loop.step(feats, tracks, 0, n, is_init=True, mask=prompts, run_mem_encoder=False).outputs
    batched = loop.encode_memories(feats, outs)
    assert batched.shape[0] == 2 and batched.dtype == torch.bfloat16
    for b, (track, out) in enumerate(zip(tracks, outs)):
        single = loop.encode_memory(feats, out)  # the predictor's per-object path
        assert torch.allclose(single.float(), batched[b:b + 1].float(), atol=1e-2, rtol=0)
        out.maskmem_features = batched[b:b + 1]
        track.cond_outputs[0] = out
    for t in range(1, 6):
        loop.track_frame(lambda t=t: loop.encode(images[t], t), tracks, t, n)

    feats = loop.encode(images[6], 6)
    memories, pointers = loop.memory(tracks, 6, n)
    assert [m.frame_idx for m in memories] == [0, 2, 4, 5]  # the prompt, strided frames 2 and 4, frame t-1
    assert [p.frame_idx for p in pointers] == [0, 5, 4, 3, 2, 1]
    assert memories[0].features.shape[0] == 2 and pointers[0].pointer.shape[0] == 2
    direct = model.track_step(feats.expand(2), memories, pointers, n)
    step = loop.step(feats, tracks, 6, n).step
    assert torch.equal(direct.pred_masks, step.pred_masks) and torch.equal(direct.obj_ptr, step.obj_ptr)

    del tracks[1].non_cond_outputs[5]  # object 2 now reads another layout
    with pytest.raises(ValueError, match="different memory layouts"):
        loop.memory(tracks, 6, n)
