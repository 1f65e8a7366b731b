"""How stable is dense SAM 2 itself? Fidelity of dense SAM 2 on imperceptibly re-encoded frames to dense SAM 2 on
the original frames: the noise floor under which no sparse configuration's fidelity can be read as a loss.

    python docs/dense_noise_floor.py clips/vtest clips/megamind clips/cup clips/box --prompts clips \
        --max-frames 150 [--quality 95] [--postprocessing off] [--model micro] [--checkpoint FILE]

Each video is tracked densely twice from the same prompts (`bench --fidelity` prompt files, or first-frame mask
PNGs): once on its frames as decoded, once on the same frames re-encoded as JPEG at --quality (95: the difference
of two encoders, invisible to the eye). Prints per video and over all videos the fidelity J&F, mean IoU and worst
frame IoU of the second run to the first, scored as `bench --fidelity` scores (prompted frames left out), with
the predictor's post-processing on (as `track` runs it) or off (as VOS evaluation and `bench --accuracy` run it).
"""

from __future__ import annotations

import argparse
import io
import os

import numpy as np
import torch
from PIL import Image

from efficient_sam2.bench.fidelity import _video_name, mask_fidelity, pair_prompts
from efficient_sam2.build import build_sam2_video_predictor
from efficient_sam2.io.frames import IMAGE_EXTENSIONS, load_image, sort_frame_names
from efficient_sam2.io.prompts import apply_prompts, load_prompts


def read_frames(folder: str, limit: int | None) -> list[np.ndarray]:
    names = sort_frame_names([n for n in os.listdir(folder) if n.lower().endswith(tuple(IMAGE_EXTENSIONS))])
    return [load_image(os.path.join(folder, n)) for n in names[:limit]]


def reencode(frame: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def track(predictor, frames: list[np.ndarray], prompts) -> dict[int, dict[int, np.ndarray]]:
    state = predictor.init_state(frames)
    prompts.check_video(len(frames), frames[0].shape[:2])
    apply_prompts(predictor, state, prompts)
    out = {}
    with torch.inference_mode():
        for t, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=min(prompts.frames),
                                                               progress=False):
            binary = (logits[:, 0] > 0).cpu().numpy()
            out[t] = {int(o): binary[i] for i, o in enumerate(obj_ids)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--prompts", nargs="+", required=True)
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--model", default="micro")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--postprocessing", choices=("on", "off"), default="on")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    predictor = build_sam2_video_predictor(args.model, checkpoint=args.checkpoint,
                                           apply_postprocessing=args.postprocessing == "on", non_overlap_masks=False)
    rows = []
    for video, prompt_file in zip(args.videos, pair_prompts(args.videos, args.prompts)):
        prompts = load_prompts(prompt_file)
        frames = read_frames(video, args.max_frames)
        original = track(predictor, frames, prompts)
        perturbed = track(predictor, [reencode(f, args.quality) for f in frames], prompts)
        skip = {o: {p.frame for p in prompts.prompts if p.obj_id == o} for o in prompts.obj_ids}
        s = mask_fidelity(original, perturbed, skip)
        rows.append(s)
        print(f"{_video_name(video):20s} fidelity J&F {s['JF']:5.1f}  mean IoU {100 * s['mean_iou']:5.1f}  "
              f"worst frame IoU {100 * s['worst_frame_iou']:5.1f}  ({len(frames)} frames)", flush=True)
    print(f"{'all':20s} fidelity J&F {np.mean([r['JF'] for r in rows]):5.1f}  mean IoU "
          f"{100 * np.mean([r['mean_iou'] for r in rows]):5.1f}  worst video J&F {min(r['JF'] for r in rows):5.1f}")


if __name__ == "__main__":
    main()
