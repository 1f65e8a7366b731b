"""Attention-guided prompts: where the image encoder itself says the objects are.

One head of one global-attention block of the Hiera trunk is read out. Its attention matrix A (N x N, N = E*E
tokens of the stride-16 grid, rows summing to 1) describes each token by what it attends to; tokens of one
object attend alike. The rows are clustered with HDBSCAN under the cosine distance, every cluster's medoid token
becomes one positive point prompt, placed at the centre of that token's cell in image pixels.

Only the chosen block and head are computed: the trunk runs block by block, the input of the chosen block is
kept, and that head's q and k are projected from it (the other heads' rows of the qkv weight are not used). The
softmax rows are computed in query chunks, so the scratch memory is chunk x N; the result itself is N x N
(64 MiB in fp32 at 1024 px). The trunk pass is the one that also produces the image embedding, so the encoder
runs once.

Cosine distance: d(a, b) = 1 - <a, b> / (|a| |b|). The matrix of these distances is computed in torch and given
to scikit-learn's HDBSCAN as a precomputed metric, which is exactly HDBSCAN with metric="cosine" (scikit-learn's
tree-based algorithms do not support cosine; the brute-force path it would take computes the same matrix). The
same matrix gives the medoids.

scikit-learn (>= 1.3, for `sklearn.cluster.HDBSCAN`) is optional and only imported here, when clustering.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..modeling.sam2 import BackboneFeatures, SAM2Model

__all__ = [
    "PRESETS",
    "ClusteringPreset",
    "AutomaskDependencyError",
    "require_hdbscan",
    "default_attention_site",
    "MODEL_ATTENTION",
    "presets_for",
    "check_attention_site",
    "encode_with_attention",
    "block_attention",
    "cosine_distance_matrix",
    "cluster_rows",
    "medoids",
    "spread_prompts",
    "region_radii",
    "region_masks",
    "parse_region_seeds",
    "tokens_to_points",
]

SKLEARN_HINT = "pip install efficient-sam2[automask]  (or: pip install 'scikit-learn>=1.3')"


@dataclass(frozen=True)
class ClusteringPreset:
    """HDBSCAN settings: min_samples (k of the core distance) and min_cluster_size; spacing: besides its medoid,
    each cluster is prompted at its tokens spread at least this many token cells apart (`spread_prompts`; 0: the
    medoid only, the thesis); seeds: for models with click seeds, the region seeds each prompt is decoded with,
    one decode per kind (`region_masks`; (): a click seed alone, the thesis)."""

    min_samples: int
    min_cluster_size: int
    description: str = ""
    spacing: float = 0
    seeds: tuple[str, ...] = ()


PRESETS: dict[str, ClusteringPreset] = {
    "low_latency": ClusteringPreset(2, 10, "about 100 prompts per image at 1024 px (Hiera-L)"),
    "high_quality": ClusteringPreset(2, 5, "about 200 prompts: smaller objects, more decoder work"),
    "sam3d": ClusteringPreset(5, 40, "about 20 prompts: few, large objects (3-D / video seeding)"),
    "sam1": ClusteringPreset(2, 3, "about 300 prompts (the thesis' SAM 1 setting)"),
}
"""The four configurations of the Efficient SAM2 thesis (min_samples, min_cluster_size)."""

MODEL_ATTENTION: dict[str, dict] = {}
"""Per model (config name): the attention site and presets chosen by measurement, which replace the thesis's
rule (first global block, head 2) and its presets for that model. Keys: "site" (block, head) and "presets"
{name: ClusteringPreset}. Filled in below from `efficient-sam2 automask --calibrate` runs (BENCHMARKS.md,
"Automatic masks"); the official sizes keep the thesis's choices (no measurement here: that needs their
checkpoints and SA-1B-like data)."""


MODEL_ATTENTION["sam2.1_hiera_micro"] = {
    # `automask data/images_val --calibrate` on the shipped stage c weights (3 held-out images per subset, filters
    # off): low_latency mIoU on the instances subset 11.5-15.7 over the eight (block, head) pairs of the two global
    # blocks; block 5 head 1 scored highest (15.7), block 3 head 3 next (13.1). (On the stage b weights block 3
    # head 0 had led with 13.2; the image encoder, hence the attention, did not change, the masks did.)
    "site": (5, 1),
    # 256 tokens at 256 px (Hiera-L has 4096 at 1024 px). At block 5 head 1, union-find: (2, 10) gives ~7 prompts
    # and mIoU 11.5 / 25.0 / 17.4 (instances / salient / camouflaged), (2, 5) ~20 prompts and 15.7 / 25.6 / 17.5,
    # (2, 3) ~40 and 14.1 / 29.5 / 18.9, (1, 2) ~72 and 14.5 / 28.3 / 17.6 (with NMS instead of union-find 25.6 /
    # 27.5 / 23.1). low_latency takes (2, 5) (2 % of a 32 x 32 grid's prompts, 0.08 s per image), high_quality
    # (1, 2) (7 %, the share the thesis's high-quality setting uses).
    # With the micro model's noise prompts (generator.MODEL_ATTENTION_DECODING) they decode 73-93 and 116-118
    # prompts per image.
    # Spread prompts (BENCHMARKS.md "Spread prompts", stage d weights, 8 held-out images per subset): a cluster
    # of the micro model's attention often spans several objects, and its medoid prompts one of them; prompting
    # its tokens 4 cells apart took low_latency from 42.0 / 64.2 / 38.0 to 45.1 / 64.1 / 41.0 mIoU (instances /
    # salient / camouflaged) at 111-134 instead of 73-93 prompts (11-13 % of a 32 x 32 grid's); spacing 3
    # took high_quality from 43.3 / 64.3 / 38.5 to 46.6 / 64.6 / 40.7 at 176-186 prompts.
    # Region seeds (BENCHMARKS.md "Region seeds"): the micro model answers with a mask of its seed's shape, so a
    # prompt seeded with its share of its cluster instead of a disk asks for the region it stands for:
    # low_latency 47.6 / 66.4 / 48.4 (disks of region radii) -> 51.5 / 66.9 / 43.1 mIoU at the same 111-134
    # prompts; high_quality with its share and the share grown by one token cell, two decodes per prompt token,
    # 48.9 / 65.4 / 48.9 -> 55.9 / 67.8 / 55.5.
    "presets": {"low_latency": ClusteringPreset(2, 5, "about 20 clusters at 256 px (micro; 111-134 prompts with "
                                                      "its noise prompts and spread prompts, each seeded with its "
                                                      "share of its cluster)", spacing=4, seeds=("share",)),
                "high_quality": ClusteringPreset(1, 2, "about 75 clusters at 256 px (micro; about 180 prompt tokens "
                                                       "with its noise prompts and spread prompts, each decoded "
                                                       "with two region seeds)", spacing=3,
                                                 seeds=("share", "share+1"))},
}


def presets_for(model) -> dict[str, ClusteringPreset]:
    """The presets of `model` (a SAM2Model or SAM2Config): the thesis's, overridden by the model's measured ones."""
    cfg = getattr(model, "cfg", model)
    return {**PRESETS, **MODEL_ATTENTION.get(getattr(cfg, "name", None), {}).get("presets", {})}


class AutomaskDependencyError(ImportError):
    """An optional dependency of automatic mask generation is missing."""


def require_hdbscan():
    """scikit-learn's HDBSCAN class, or AutomaskDependencyError with the install command."""
    try:
        import sklearn
    except ImportError as exc:
        raise AutomaskDependencyError(
            f"attention prompting clusters attention rows with HDBSCAN from scikit-learn >= 1.3, which is not "
            f"installed: {SKLEARN_HINT}. Grid prompting (prompting='grid') works without it."
        ) from exc
    try:
        from sklearn.cluster import HDBSCAN
    except ImportError as exc:  # scikit-learn < 1.3 has no HDBSCAN
        raise AutomaskDependencyError(
            f"attention prompting needs sklearn.cluster.HDBSCAN (scikit-learn >= 1.3), but scikit-learn "
            f"{getattr(sklearn, '__version__', '?')} is installed: {SKLEARN_HINT}"
        ) from exc
    return HDBSCAN


# ----------------------------------------------------------------------------------------------------------------
# Which block and head


def default_attention_site(model) -> tuple[int, int]:
    """Default (block, head): the site measured for this model (MODEL_ATTENTION), else the thesis's rule: the
    first global-attention block of the trunk, head 2.

    `model` is a SAM2Model, a SAM2Config or a HieraConfig. Per size (0-based block indices): tiny (5, 2),
    small (7, 2), base_plus (12, 2), large (23, 2). For Hiera-L the Efficient SAM2 thesis names "layer 22,
    head 2"; block 22 is windowed, and block 23, the first global block, is the one that reads block 22's
    output. The first global block sits at 42-50 % of the trunk depth in every size.
    """
    cfg = getattr(model, "cfg", model)
    measured = MODEL_ATTENTION.get(getattr(cfg, "name", None), {}).get("site")
    if measured is not None:
        return tuple(measured)
    hiera = getattr(cfg, "hiera", cfg)
    if not hasattr(hiera, "global_att_blocks"):
        raise TypeError(f"expected a SAM2Model, SAM2Config or HieraConfig, got {type(model).__name__}")
    if not hiera.global_att_blocks:
        raise ValueError("this trunk has no global-attention block")
    block = min(hiera.global_att_blocks)
    stage = next(s for s, end in enumerate(hiera.stage_ends) if block <= end)
    heads = hiera.stage_heads[stage]
    return block, min(2, heads - 1)


def check_attention_site(model: SAM2Model, block: int, head: int) -> None:
    """Raise ValueError unless `block` is a global-attention block of the trunk and `head` one of its heads."""
    trunk = model.image_encoder.trunk
    n = len(trunk.blocks)
    globals_ = [i for i in range(n) if trunk.blocks[i].window_size == 0 and trunk.blocks[i].q_stride is None]
    if not isinstance(block, (int, np.integer)) or not 0 <= block < n or block not in globals_:
        raise ValueError(
            f"block {block} is not a global-attention block of {model.cfg.name}; its global blocks are "
            f"{globals_} (0-based). Windowed blocks only attend inside their windows."
        )
    heads = trunk.blocks[block].attn.num_heads
    if not isinstance(head, (int, np.integer)) or not 0 <= head < heads:
        raise ValueError(f"head {head} does not exist: block {block} has heads 0..{heads - 1}")


# ----------------------------------------------------------------------------------------------------------------
# Attention of one head of one block


@torch.no_grad()
def block_attention(block, x: torch.Tensor, head: int, chunk: int = 1024) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) of one head of a global-attention Hiera block.

    x: (1, H, W, C) the block's input (before its norm1). Returns (N, N) float32, N = H * W, rows = queries in
    raster order (token t is row t // W, column t % W of the grid).
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one token grid (1, H, W, C), got {tuple(x.shape)}")
    attn = block.attn
    nh, hd = attn.num_heads, attn.head_dim
    tokens = block.norm1(x).reshape(-1, x.shape[-1])  # (N, C)
    # qkv rows are laid out as (3, heads, head_dim): q of head h is rows h*hd..(h+1)*hd, k is offset by nh*hd
    w, b = attn.qkv.weight, attn.qkv.bias
    q_rows = slice(head * hd, (head + 1) * hd)
    k_rows = slice(nh * hd + head * hd, nh * hd + (head + 1) * hd)
    q = torch.nn.functional.linear(tokens, w[q_rows], None if b is None else b[q_rows]).float()
    k = torch.nn.functional.linear(tokens, w[k_rows], None if b is None else b[k_rows]).float()
    q = q * hd**-0.5
    N = tokens.shape[0]
    out = torch.empty(N, N, dtype=torch.float32, device=x.device)
    step = max(1, int(chunk))
    for s in range(0, N, step):
        out[s:s + step] = torch.softmax(q[s:s + step] @ k.T, dim=-1)
    return out


@torch.no_grad()
def encode_with_attention(model: SAM2Model, images: torch.Tensor, block: int, head: int, chunk: int = 1024
                          ) -> tuple[BackboneFeatures, torch.Tensor, tuple[int, int], float]:
    """The dense image encoder (as `model.forward_image`) plus the attention of one head of one block.

    images: (1, 3, S, S). Returns (features, attention (N, N), token grid (h, w), seconds spent on the attention
    itself, synchronised on CUDA).
    """
    import time

    check_attention_site(model, block, head)
    trunk = model.image_encoder.trunk
    x = trunk.embed(images)
    ends = set(trunk.stage_ends)
    outputs = []
    attention, grid, seconds = None, None, 0.0
    for i, blk in enumerate(trunk.blocks):
        if i == block:
            _sync(x.device)
            t0 = time.perf_counter()
            attention = block_attention(blk, x, head, chunk)
            _sync(x.device)
            seconds = time.perf_counter() - t0
            grid = (x.shape[1], x.shape[2])
        x = blk(x)
        if i in ends:
            outputs.append(x.permute(0, 3, 1, 2))
    out = model.image_encoder.forward_features(outputs)
    fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
    high_res = [model.sam_mask_decoder.conv_s0(fpn[0]), model.sam_mask_decoder.conv_s1(fpn[1])]
    return BackboneFeatures(high_res=high_res, vision=fpn[2], vision_pos=pos[2]), attention, grid, seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------------------------
# Clustering


@torch.no_grad()
def cosine_distance_matrix(rows: torch.Tensor) -> torch.Tensor:
    """(N, N) float32 cosine distances 1 - cos(r_i, r_j) of (N, D) rows: symmetric, zero diagonal, in [0, 2]."""
    r = rows.float()
    r = r / r.norm(dim=1, keepdim=True).clamp(min=1e-12)
    d = 1.0 - r @ r.T
    d = 0.5 * (d + d.T)
    d.clamp_(0.0, 2.0).fill_diagonal_(0.0)
    return d


def cluster_rows(distances, min_samples: int, min_cluster_size: int) -> np.ndarray:
    """HDBSCAN labels (N,) of points given their (N, N) distance matrix; -1 marks noise.

    Fewer than two points, or fewer than min_cluster_size, give no cluster (all -1).
    """
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size must be >= 2, got {min_cluster_size}")
    HDBSCAN = require_hdbscan()
    d = distances.detach().cpu().double().numpy() if hasattr(distances, "detach") else np.asarray(distances, float)
    n = d.shape[0]
    if d.ndim != 2 or d.shape[1] != n:
        raise ValueError(f"expected a square distance matrix, got shape {d.shape}")
    if n < 2 or n < min_cluster_size:
        return np.full(n, -1, dtype=np.int64)
    kwargs = dict(min_cluster_size=int(min_cluster_size), min_samples=int(min(min_samples, n - 1)),
                  metric="precomputed")
    if "copy" in inspect.signature(HDBSCAN).parameters:
        kwargs["copy"] = False  # `d` is our own float64 copy
    labels = HDBSCAN(**kwargs).fit_predict(np.ascontiguousarray(d))
    return np.asarray(labels, dtype=np.int64)


def medoids(distances, labels: np.ndarray) -> list[int]:
    """For every cluster label >= 0 (ascending), the member with the smallest sum of distances to the other
    members (ties: the lowest index)."""
    d = distances.detach().cpu() if hasattr(distances, "detach") else torch.as_tensor(np.asarray(distances))
    labels = np.asarray(labels)
    out = []
    for lab in sorted(set(labels.tolist()) - {-1}):
        members = np.flatnonzero(labels == lab)
        idx = torch.as_tensor(members)
        sums = d[idx][:, idx].double().sum(dim=1)
        out.append(int(members[int(torch.argmin(sums))]))
    return out


def _cells(tokens: np.ndarray, grid_w: int) -> np.ndarray:
    """(N, 2) float (row, column) of raster tokens on a grid `grid_w` wide."""
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    return np.stack((tokens // grid_w, tokens % grid_w), axis=1).astype(np.float64)


def spread_prompts(labels: np.ndarray, centres: Sequence[int], grid_w: int, spacing: float) -> list[int]:
    """More prompt tokens inside the clusters: for every cluster label >= 0 (ascending) with its prompt token
    `centres[i]` (its medoid), farthest-point sampling on the token grid: repeatedly the member farthest (Euclidean
    distance in cells of a row-major grid `grid_w` wide) from every prompt of the cluster so far, while that
    distance is at least `spacing`. Returns the added tokens only (none for spacing <= 0)."""
    labels = np.asarray(labels)
    clusters = sorted(set(labels.tolist()) - {-1})
    if len(centres) != len(clusters):
        raise ValueError(f"{len(centres)} centres for {len(clusters)} clusters")
    if spacing <= 0:
        return []
    added = []
    for lab, centre in zip(clusters, centres):
        members = np.flatnonzero(labels == lab)
        cells = _cells(members, grid_w)
        nearest = np.hypot(*(cells - _cells(centre, grid_w)).T)
        while True:
            j = int(np.argmax(nearest))  # ties: the lowest token
            if nearest[j] < spacing:
                break
            added.append(int(members[j]))
            nearest = np.minimum(nearest, np.hypot(*(cells - cells[j]).T))
    return added


def _shares(labels: np.ndarray, tokens: np.ndarray, grid_w: int):
    """For every cluster that a prompt token belongs to: (positions in `tokens` of its prompts, the cluster's
    member tokens, for each member the index (into the positions) of its nearest prompt in cells of a row-major
    grid `grid_w` wide; ties: the first)."""
    own = labels[tokens] if tokens.size else np.zeros(0, dtype=np.int64)
    for lab in sorted(set(own.tolist()) - {-1}):
        idx = np.flatnonzero(own == lab)
        members = np.flatnonzero(labels == lab)
        d = ((_cells(members, grid_w)[:, None, :] - _cells(tokens[idx], grid_w)[None, :, :]) ** 2).sum(-1)
        yield idx, members, d.argmin(axis=1)


def region_radii(labels: np.ndarray, tokens: Sequence[int], grid_w: int, cell: float, low: float, high: float,
                 scale: float = 1.0) -> np.ndarray:
    """A click-seed radius for each prompt token: the radius of the disk as large as the prompt's share of its
    cluster (the cluster's tokens nearest to it, in cells of a row-major grid `grid_w` wide, each `cell` input
    pixels wide), times `scale`, clipped to [low, high]; `low` for a token HDBSCAN left as noise."""
    labels = np.asarray(labels)
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    radii = np.full(tokens.size, float(low))
    for idx, _, nearest in _shares(labels, tokens, grid_w):
        share = np.bincount(nearest, minlength=idx.size)
        radii[idx] = np.clip(scale * cell * np.sqrt(share / np.pi), low, high)
    return radii


def parse_region_seeds(seeds: Sequence[str] | str) -> tuple[str, ...]:
    """Validated region seed kinds (a sequence, or one comma-separated string) as a tuple, in the given order."""
    items = [v.strip() for v in seeds.split(",")] if isinstance(seeds, str) else [str(v).strip() for v in seeds]
    for v in items:
        grow = v[len("share+"):] if v.startswith("share+") else ""
        if v not in ("share", "cluster") and not (grow.isdigit() and int(grow) >= 1):
            raise ValueError(f"unknown region seed {v!r}: use share, share+N (N >= 1 token cells) or cluster")
    if len(set(items)) != len(items):
        raise ValueError(f"region seeds repeat: {items}")
    return tuple(items)


def region_masks(kind: str, labels: np.ndarray, tokens: Sequence[int], grid_hw: tuple[int, int]) -> np.ndarray:
    """(P, grid_h, grid_w) bool: for each prompt token, the region of the token grid (raster, `labels` one per
    token, -1 noise) that its seed covers besides its click: "share" its share of its cluster (the members nearest
    to it among the cluster's prompts, as `region_radii` counts them), "share+N" that share grown by N cells (a
    (2N + 1)-square dilation), "cluster" its whole cluster; nothing for a token HDBSCAN left as noise. Drawn into
    the click seed (`PromptEncoder.click_seeds`), a region asks a model that follows its seeds (the micro model)
    for a mask of the region's shape rather than of a disk's."""
    kind = parse_region_seeds([kind])[0]
    labels = np.asarray(labels)
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    gh, gw = int(grid_hw[0]), int(grid_hw[1])
    out = np.zeros((tokens.size, gh * gw), dtype=bool)
    for idx, members, nearest in _shares(labels, tokens, gw):
        for j, i in enumerate(idx):
            out[i, members if kind == "cluster" else members[nearest == j]] = True
    out = out.reshape(tokens.size, gh, gw)
    if kind.startswith("share+") and out.size:
        n = int(kind[len("share+"):])
        grown = F.max_pool2d(torch.from_numpy(out).float()[:, None], 2 * n + 1, stride=1, padding=n)
        out = grown[:, 0].numpy() > 0
    return out


def tokens_to_points(tokens, grid_hw: tuple[int, int], image_hw: tuple[int, int]) -> np.ndarray:
    """Pixel (x, y) of the centre of each raster token's cell, in the original image.

    The model sees the image resized (without keeping the aspect ratio) to a square covered by the token grid,
    so each axis scales on its own: token t at (row r, col c) = divmod(t, grid_w) maps to
    x = (c + 0.5) * W / grid_w, y = (r + 0.5) * H / grid_h for an image of H x W pixels.
    """
    gh, gw = int(grid_hw[0]), int(grid_hw[1])
    h, w = image_hw
    t = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if t.size and (t.min() < 0 or t.max() >= gh * gw):
        raise ValueError(f"token indices must lie in [0, {gh * gw}) for a {gh}x{gw} grid")
    r, c = np.divmod(t, gw)
    return np.stack([(c + 0.5) * (w / gw), (r + 0.5) * (h / gh)], axis=1).astype(np.float64)
