"""Write tests/data/paper_golden.npz: the Efficient-SAM2 masks and statistics of the code before the options beyond
the paper existed (commit d85918f), on a fixed held-out clip, for the bundled micro weights and shortcut.

`EfficientConfig.paper()` must keep reproducing them (tests/test_beyond_paper.py). Regenerate whenever the bundled
weights change, with the old code and the new weights:

    git worktree add /tmp/paper-code d85918f
    PYTHONPATH=/tmp/paper-code python tests/data/make_paper_golden.py tests/data/paper_golden.npz
"""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "..", "..", "efficient_sam2", "weights")
SEED, SUBSET, FRAMES = 20261207, "fast_motion", 10


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(out: str) -> None:
    import efficient_sam2
    from efficient_sam2.build import build_sam2_video_predictor
    from efficient_sam2.data.synthetic import generate_video
    from efficient_sam2.efficient.config import EfficientConfig

    torch.set_num_threads(1)
    model_file = os.path.join(WEIGHTS, "sam2.1_hiera_micro.pt")
    shortcut_file = os.path.join(WEIGHTS, "sam2.1_hiera_micro_shortcut.pt")
    print(f"code: {efficient_sam2.__file__}")
    video = generate_video(SEED, SUBSET, frames=FRAMES)
    predictor = build_sam2_video_predictor("micro", model_file, efficient=EfficientConfig(),
                                           shortcut_checkpoint=shortcut_file)
    state = predictor.init_state(video.frames)
    for i in np.unique(video.masks[0]):
        if i:
            predictor.add_new_mask(state, 0, int(i), video.masks[0] == i)
    masks = np.stack([(m[:, 0] > 0).numpy() for _, _, m in predictor.propagate_in_video(state, progress=False)])
    stats = predictor.statistics(state)
    np.savez_compressed(out, masks=np.packbits(masks), shape=np.array(masks.shape),
                        kept_windows=np.array(list(stats.kept_windows.values())),
                        kept_memory=np.array(list(stats.kept_memory.values())),
                        fallbacks=np.array(stats.saliency_fallbacks, dtype=np.int64),
                        weights_sha256=sha256(model_file), shortcut_sha256=sha256(shortcut_file))
    print(f"wrote {out}: masks {masks.shape}, kept windows {np.round(list(stats.kept_windows.values()), 3)}")


if __name__ == "__main__":
    main(sys.argv[1])
