"""Counted FLOPs of the SAM 2 modules, for the windows and tokens a call actually computes.

Convention (the same as `torch.utils.flop_counter.FlopCounterMode`): one multiply-accumulate is 2 FLOPs, and only
the products are counted: linear layers (bias adds are free), convolutions, and the two matrix products of every
attention (q.k^T and p.v). Norms, activations, softmax, pooling, position encodings and gathers count nothing.

Every count below follows the code path it describes, including padding the model really computes: windowed
Hiera blocks run attention and projections on zero-padded windows, Sparse Window Routing runs the MLPs of routed
blocks on the real tokens only, while global blocks inside the routed span read only the real tokens of the
kept windows.

The Hiera counts walk the trunk's `HieraGeometry` (`efficient_sam2.modeling.hiera_geometry`), the same block
layout the model is built from. The per-call functions take plain integers so that the benchmark can describe each
call it timed (`describe_*` in `efficient_sam2.bench.speed`) and count its work afterwards.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..configs import HieraConfig, SAM2Config
from ..modeling.hiera_geometry import HieraBlockSpec, HieraGeometry

__all__ = [
    "linear_flops",
    "attention_flops",
    "conv2d_flops",
    "conv_transpose2d_flops",
    "HieraBlockSpec",
    "hiera_blocks",
    "hiera_routed_span",
    "hiera_flops",
    "image_encoder_flops",
    "shortcut_flops",
    "kept_window_tokens",
    "memory_attention_flops",
    "mask_decoder_flops",
    "prompt_encoder_flops",
    "memory_encoder_flops",
    "high_res_projection_flops",
    "object_pointer_flops",
    "neck_flops",
    "pooled_key_count",
    "FlopModel",
    "tracked_frame_flops",
    "ideal_speedups",
    "IDEAL_MODELS",
]


# ----------------------------------------------------------------------------------------------------------------
# Primitives
# ----------------------------------------------------------------------------------------------------------------


def linear_flops(tokens: int, d_in: int, d_out: int) -> int:
    """A Linear layer (d_in -> d_out) applied to `tokens` vectors."""
    return 2 * tokens * d_in * d_out


def attention_flops(sets: int, q_len: int, k_len: int, width: int) -> int:
    """q.k^T and p.v of `sets` independent attentions; `width` = heads x head_dim (the same for q, k and v)."""
    return 4 * sets * q_len * k_len * width


def conv2d_flops(batch: int, out_h: int, out_w: int, c_in: int, c_out: int, kernel: int, groups: int = 1) -> int:
    """A square-kernel convolution producing an (out_h, out_w) map."""
    return 2 * batch * out_h * out_w * c_out * (c_in // groups) * kernel * kernel


def conv_transpose2d_flops(batch: int, in_h: int, in_w: int, c_in: int, c_out: int, kernel: int) -> int:
    """A square-kernel transposed convolution reading an (in_h, in_w) map (every input pixel meets every tap)."""
    return 2 * batch * in_h * in_w * c_in * c_out * kernel * kernel


# ----------------------------------------------------------------------------------------------------------------
# Hiera image encoder
# ----------------------------------------------------------------------------------------------------------------


def hiera_blocks(cfg: HieraConfig) -> list[HieraBlockSpec]:
    """The blocks of a Hiera trunk (`HieraGeometry.blocks`)."""
    return list(HieraGeometry.of(cfg).blocks)


def hiera_routed_span(cfg: HieraConfig) -> tuple[int, int]:
    """(first, last): blocks first..last-1 of the stride-16 stage are routed, block `last` (the stage's last
    global block) runs densely on the reassembled map (`HieraGeometry.routed_span`)."""
    return HieraGeometry.of(cfg).routed_span


def _stride(b: HieraBlockSpec) -> int:
    """The block's query-pooling stride as one number (1 = none)."""
    if b.q_stride is None:
        return 1
    if b.q_stride[0] != b.q_stride[1]:
        raise ValueError("the FLOP model supports square query strides only")
    return b.q_stride[0]


def _block_flops(b: HieraBlockSpec, batch: int, h: int, w: int) -> tuple[int, int, int]:
    """Dense block on a (batch, h, w) grid. Returns (flops, out_h, out_w)."""
    s = _stride(b)
    out_h, out_w = h // s, w // s
    flops = 0
    if b.dim != b.dim_out:  # residual branch: proj(norm1(x)) on every real token, then pooled
        flops += linear_flops(batch * h * w, b.dim, b.dim_out)
    if b.window > 0:
        win = b.window
        hp, wp = -(-h // win) * win, -(-w // win) * win
        sets = batch * (hp // win) * (wp // win)
        q_len, k_len = (win // s) ** 2, win * win
        flops += linear_flops(sets * k_len, b.dim, 3 * b.dim_out)
        flops += attention_flops(sets, q_len, k_len, b.dim_out)
        flops += linear_flops(sets * q_len, b.dim_out, b.dim_out)
    else:
        q_len, k_len = out_h * out_w, h * w
        flops += linear_flops(batch * k_len, b.dim, 3 * b.dim_out)
        flops += attention_flops(batch, q_len, k_len, b.dim_out)
        flops += linear_flops(batch * q_len, b.dim_out, b.dim_out)
    tokens = batch * out_h * out_w
    flops += linear_flops(tokens, b.dim_out, b.mlp_hidden) + linear_flops(tokens, b.mlp_hidden, b.dim_out)
    return flops, out_h, out_w


def kept_window_tokens(keep: Sequence[int], h: int, w: int, window: int) -> int:
    """Real (unpadded) tokens inside the kept windows of an (h, w) map cut into `window`-sided windows."""
    side_w = -(-w // window)
    total = 0
    for k in keep:
        r, c = divmod(int(k), side_w)
        total += max(0, min((r + 1) * window, h) - r * window) * max(0, min((c + 1) * window, w) - c * window)
    return total


def shortcut_flops(variant: str | None, tokens: int, windows: int, window: int, dim: int,
                   num_heads: int = 4) -> int:
    """The shortcut branch applied to `windows` background windows (`tokens` = windows x window^2 tokens)."""
    if variant in (None, "identity") or tokens == 0:
        return 0
    if variant == "bottleneck":
        return linear_flops(tokens, dim, dim // 2) + linear_flops(tokens, dim // 2, dim)
    if variant == "ffn":
        return linear_flops(tokens, dim, 2 * dim) + linear_flops(tokens, 2 * dim, dim)
    if variant == "attention":
        inner = dim // 2
        return (linear_flops(tokens, dim, inner) + linear_flops(tokens, inner, 3 * inner)
                + attention_flops(windows, window * window, window * window, inner) + linear_flops(tokens, inner, dim))
    raise ValueError(f"unknown shortcut variant {variant!r}")


def hiera_flops(
    cfg: HieraConfig,
    image_size: int,
    batch: int = 1,
    keep: Sequence[int] | None = None,
    shortcut: str | None = "bottleneck",
    context: bool = False,
    reuse: bool = False,
) -> dict[str, int]:
    """FLOPs of the trunk on (batch, 3, S, S) images, dense (`keep` None) or with the routed span computing only
    the windows in `keep` (indices on the routed stage's padded window grid, row-major). `context`
    (`EfficientConfig.global_context`): the span's first block, if global, and with `reuse` (`reuse_residuals`,
    every background window carried over) its deeper global blocks also read keys and values of the background's
    real tokens.

    Returns {"patch_embed", "blocks", "routed", "shortcut", "total"} where "routed" is the part of "blocks" spent
    in the routed span (all of it on a dense call as well, for comparison) and "shortcut" the background branch.
    """
    h = w = image_size // 4
    out = {"patch_embed": conv2d_flops(batch, h, w, 3, cfg.embed_dim, 7), "blocks": 0, "routed": 0, "shortcut": 0}
    geometry = HieraGeometry.of(cfg)
    first, last = geometry.routed_span
    for b in geometry.blocks:
        if first <= b.index < last:
            if keep is None:
                f, h, w = _block_flops(b, batch, h, w)
            else:
                with_context = context and b.window == 0 and (b.index == first or reuse)
                f = _routed_block_flops(b, geometry.routed_window, batch, h, w, keep, with_context)
            out["routed"] += f
            out["blocks"] += f
            continue
        f, h, w = _block_flops(b, batch, h, w)
        out["blocks"] += f
    if keep is not None:
        window, dim = geometry.routed_window, geometry.routed_dim
        side = geometry.token_grid(first, image_size)
        num_windows = (-(-side // window)) ** 2
        background = batch * (num_windows - len(keep))
        out["shortcut"] = shortcut_flops(shortcut, background * window * window, background, window, dim)
    out["total"] = out["patch_embed"] + out["blocks"] + out["shortcut"]
    return out


def _routed_block_flops(b: HieraBlockSpec, window: int, batch: int, h: int, w: int, keep: Sequence[int],
                        context: bool = False) -> int:
    """A block of the routed span (windows of side `window`) run on the kept windows only (as
    `Hiera._routed_forward` does); `context`: a global block whose kept tokens also attend to every background
    token (keys and values of those computed too)."""
    K = len(keep)
    if K == 0:
        return 0
    real = batch * kept_window_tokens(keep, h, w, window)
    extra = 0
    if b.window > 0:
        tokens = batch * K * window * window  # attention runs on the padded windows, the MLP on real tokens
        sets, length, keys = batch * K, window * window, window * window
    else:
        tokens, sets, length, keys = real, batch, real // batch, real // batch
        if context:
            background = batch * h * w - real
            extra = linear_flops(background, b.dim, 2 * b.dim_out)
            keys += background // batch
    return (linear_flops(tokens, b.dim, 3 * b.dim_out) + extra + attention_flops(sets, length, keys, b.dim_out)
            + linear_flops(tokens, b.dim_out, b.dim_out) + linear_flops(real, b.dim_out, b.mlp_hidden)
            + linear_flops(real, b.mlp_hidden, b.dim_out))


def neck_flops(cfg: HieraConfig, image_size: int, batch: int = 1, d_model: int = 256) -> int:
    """The FPN neck's 1x1 lateral convolutions on all four trunk levels."""
    total, h = 0, image_size // 4
    for level, dim in enumerate(cfg.stage_dims):
        if level:
            h //= cfg.q_stride[0]
        total += conv2d_flops(batch, h, h, dim, d_model, 1)
    return total


def image_encoder_flops(cfg: SAM2Config, batch: int = 1, keep: Sequence[int] | None = None,
                        shortcut: str | None = "bottleneck", context: bool = False, reuse: bool = False) -> int:
    """Trunk + neck (the `image_encoder` module) on `batch` images (`hiera_flops` for the options)."""
    trunk = hiera_flops(cfg.hiera, cfg.image_size, batch, keep, shortcut, context, reuse)["total"]
    return trunk + neck_flops(cfg.hiera, cfg.image_size, batch, cfg.d_model)


def high_res_projection_flops(cfg: SAM2Config, batch: int = 1) -> int:
    """conv_s0 / conv_s1, applied to the stride-4 and stride-8 levels after the image encoder."""
    e, c = cfg.embed_size, cfg.d_model
    return conv2d_flops(batch, 4 * e, 4 * e, c, c // 8, 1) + conv2d_flops(batch, 2 * e, 2 * e, c, c // 4, 1)


# ----------------------------------------------------------------------------------------------------------------
# Memory attention
# ----------------------------------------------------------------------------------------------------------------


def memory_attention_flops(
    batch: int,
    num_queries: int,
    keys_per_layer: Sequence[int],
    projected_per_layer: Sequence[int] | None = None,
    saliency_per_layer: Sequence[int] | None = None,
    d_model: int = 256,
    kv_dim: int = 64,
    dim_feedforward: int = 2048,
) -> int:
    """Memory attention on `batch` frames of `num_queries` tokens.

    keys_per_layer: keys each layer's cross-attention attends to; projected_per_layer: memory tokens each layer
    projects to keys and values (default: the same; MemPool projects every token and pools afterwards);
    saliency_per_layer: keys whose query-averaged attention a layer also computes explicitly (SMR's first
    recollection), 0 = none.
    """
    n, c = num_queries, d_model
    projected = list(projected_per_layer) if projected_per_layer is not None else list(keys_per_layer)
    saliency = list(saliency_per_layer) if saliency_per_layer is not None else [0] * len(keys_per_layer)
    total = 0
    for keys, proj, sal in zip(keys_per_layer, projected, saliency):
        total += 4 * linear_flops(batch * n, c, c) + attention_flops(batch, n, n, c)  # self-attention
        total += 2 * linear_flops(batch * n, c, c)  # cross-attention q and output projections
        total += 2 * linear_flops(batch * proj, kv_dim, c)  # k and v projections
        total += attention_flops(batch, n, keys, c)
        total += 2 * batch * n * sal * c  # explicit q.k^T of the saliency
        total += linear_flops(batch * n, c, dim_feedforward) + linear_flops(batch * n, dim_feedforward, c)
    return total


# ----------------------------------------------------------------------------------------------------------------
# SAM heads and memory encoder
# ----------------------------------------------------------------------------------------------------------------


def prompt_encoder_flops(batch: int, num_points: int, boxes: bool, mask: bool, embed_size: int,
                         embed_dim: int = 256, mask_in_chans: int = 16) -> int:
    """Prompt encoder: Fourier features of every point (one padding point added without boxes), box corners,
    and the mask-prompt convolutions."""
    pe = embed_dim // 2
    points = num_points + (0 if boxes else 1) if num_points else 0
    total = 2 * batch * (points + (2 if boxes else 0)) * 2 * pe
    if mask:
        e = embed_size
        total += conv2d_flops(batch, 2 * e, 2 * e, 1, mask_in_chans // 4, 2)
        total += conv2d_flops(batch, e, e, mask_in_chans // 4, mask_in_chans, 2)
        total += conv2d_flops(batch, e, e, mask_in_chans, embed_dim, 1)
    return total


def mask_decoder_flops(
    batch: int,
    num_prompt_tokens: int,
    embed_size: int,
    d_model: int = 256,
    depth: int = 2,
    mlp_dim: int = 2048,
    downsample: int = 2,
    num_mask_tokens: int = 4,
    obj_score_token: bool = True,
    iou_hidden: int = 256,
    attention_maps: bool = False,
) -> int:
    """Mask decoder (two-way transformer, upscaling, hypernetworks, IoU and object-score heads) for `batch`
    prompts of `num_prompt_tokens` sparse tokens each on an embed_size x embed_size image embedding.

    `attention_maps`: the decoder also computes its token -> image attention probabilities (for the window
    router) beside the attention itself: one more q.k product per token -> image attention."""
    c, ci = d_model, d_model // downsample
    n = num_mask_tokens + 1 + int(obj_score_token) + num_prompt_tokens
    l = embed_size * embed_size
    b = batch

    def cross(nq: int, nk: int) -> int:
        return (linear_flops(b * nq, c, ci) + 2 * linear_flops(b * nk, c, ci) + attention_flops(b, nq, nk, ci)
                + linear_flops(b * nq, ci, c))

    total = 0
    for _ in range(depth):
        total += 4 * linear_flops(b * n, c, c) + attention_flops(b, n, n, c)  # token self-attention
        total += cross(n, l)  # tokens -> image
        total += linear_flops(b * n, c, mlp_dim) + linear_flops(b * n, mlp_dim, c)
        total += cross(l, n)  # image -> tokens
    total += cross(n, l)  # final tokens -> image
    if attention_maps:
        total += (depth + 1) * attention_flops(b, n, l, ci) // 2  # the extra q.k products
    e = embed_size
    total += conv_transpose2d_flops(b, e, e, c, c // 4, 2) + conv_transpose2d_flops(b, 2 * e, 2 * e, c // 4, c // 8, 2)
    total += num_mask_tokens * (2 * linear_flops(b, c, c) + linear_flops(b, c, c // 8))  # hypernetwork MLPs
    total += 2 * b * num_mask_tokens * (c // 8) * (4 * e) ** 2  # mask = weights . upscaled embedding
    total += linear_flops(b, c, iou_hidden) + linear_flops(b, iou_hidden, iou_hidden) + linear_flops(
        b, iou_hidden, num_mask_tokens)
    if obj_score_token:
        total += 2 * linear_flops(b, c, c) + linear_flops(b, c, 1)
    return total


def object_pointer_flops(batch: int, d_model: int = 256) -> int:
    """The 3-layer object-pointer MLP applied to the chosen output token."""
    return 3 * linear_flops(batch, d_model, d_model)


def memory_encoder_flops(batch: int, image_size: int, d_model: int = 256, mem_dim: int = 64) -> int:
    """Memory encoder: mask downsampler (4 strided 3x3 convs + 1x1), feature projection, two ConvNeXt blocks and
    the output projection."""
    total, chans, size = 0, 1, image_size
    while size > image_size // 16:
        size //= 2
        total += conv2d_flops(batch, size, size, chans, chans * 4, 3)
        chans *= 4
    e = image_size // 16
    total += conv2d_flops(batch, e, e, chans, d_model, 1)
    total += conv2d_flops(batch, e, e, d_model, d_model, 1)  # pix_feat_proj
    for _ in range(2):
        total += conv2d_flops(batch, e, e, d_model, d_model, 7, groups=d_model)
        total += linear_flops(batch * e * e, d_model, 4 * d_model) + linear_flops(batch * e * e, 4 * d_model, d_model)
    total += conv2d_flops(batch, e, e, d_model, mem_dim, 1)
    return total


# ----------------------------------------------------------------------------------------------------------------
# Call descriptors -> FLOPs
# ----------------------------------------------------------------------------------------------------------------


class FlopModel:
    """Counts the FLOPs of the module calls the benchmark records, for one model configuration.

    Each `describe_*` function of `efficient_sam2.bench.speed` turns a call's arguments into a small dict; the
    method of the same module name here counts it.
    """

    def __init__(self, cfg: SAM2Config) -> None:
        self.cfg = cfg

    def image_encoder(self, d: dict) -> int:
        return image_encoder_flops(self.cfg, d["batch"], d.get("keep"), d.get("shortcut"), d.get("context", False),
                                   d.get("reuse", False))

    def memory_attention(self, d: dict) -> int:
        return memory_attention_flops(
            d["batch"], d["queries"], d["keys"], d.get("projected"), d.get("saliency"),
            self.cfg.d_model, self.cfg.mem_dim,
        )

    def prompt_encoder(self, d: dict) -> int:
        return prompt_encoder_flops(d["batch"], d["points"], d["boxes"], d["mask"], self.cfg.embed_size,
                                    self.cfg.d_model)

    def mask_decoder(self, d: dict) -> int:
        return mask_decoder_flops(d["batch"], d["prompt_tokens"], d.get("embed_size", self.cfg.embed_size),
                                  self.cfg.d_model, attention_maps=d.get("attention_maps", False))

    def memory_encoder(self, d: dict) -> int:
        return memory_encoder_flops(d["batch"], d["mask_size"], self.cfg.d_model, self.cfg.mem_dim)

    def count(self, module: str, descriptor: dict) -> int:
        return getattr(self, module)(descriptor)

    def outside_modules(self, image_calls: int, decoder_batch: int) -> int:
        """Work between the timed modules: the high-resolution projections after every image encoding and the
        object-pointer MLP after every decoded prompt."""
        return image_calls * high_res_projection_flops(self.cfg) + object_pointer_flops(decoder_batch,
                                                                                        self.cfg.d_model)


def pooled_key_count(num_spatial: int, tokens_per_frame: int, grid: int, kernel: int, num_pointer: int) -> int:
    """Keys left after MemPool's kernel x kernel average pooling (ceil mode) of every spatial memory frame."""
    frames = num_spatial // tokens_per_frame
    return frames * math.ceil(grid / kernel) ** 2 + num_pointer


# ----------------------------------------------------------------------------------------------------------------
# What measured kept fractions buy on a model
# ----------------------------------------------------------------------------------------------------------------


def tracked_frame_flops(cfg: SAM2Config, kept_windows: float = 1.0, kept_memory: float = 1.0, objects: int = 1,
                        efficient: bool | None = None, context: bool = False, reuse: bool = False) -> int:
    """FLOPs of one steady-state tracked frame (full memory bank, no prompt) of `objects` objects on model `cfg`:
    image encoder (its routed stage computing `kept_windows` of its windows) and high-resolution projections once,
    then per object memory attention reading `kept_memory` of its memory tokens, the SAM heads, the object pointer
    and the memory encoder. `efficient` (default: any fraction below 1) adds what the accelerated path computes on
    top: the decoder's attention maps and one memory frame's explicit saliency (a first recollection). `context`,
    `reuse`: `EfficientConfig.global_context` and `reuse_residuals` (background windows then take their carried-over
    residual, not the shortcut)."""
    if not (0.0 < kept_windows <= 1.0 and 0.0 < kept_memory <= 1.0):
        raise ValueError(f"kept fractions must be in (0, 1], got {kept_windows} and {kept_memory}")
    if efficient is None:
        efficient = kept_windows < 1.0 or kept_memory < 1.0
    geometry = HieraGeometry.of(cfg.hiera)
    first = geometry.routed_span[0]
    side = -(-geometry.token_grid(first, cfg.image_size) // geometry.routed_window)
    num_windows = side * side
    keep = None
    if kept_windows < 1.0:
        keep = list(range(min(num_windows, max(1, round(kept_windows * num_windows)))))
    e = cfg.embed_size
    tokens = e * e
    pointers = cfg.max_obj_ptrs_in_encoder * (cfg.d_model // cfg.mem_dim)
    dense_keys = cfg.num_maskmem * tokens + pointers
    keys = max(1, round(kept_memory * dense_keys))
    layers = cfg.num_memory_attention_layers
    total = image_encoder_flops(cfg, 1, keep, None if reuse else "bottleneck", context, reuse)
    total += high_res_projection_flops(cfg, 1)
    total += memory_attention_flops(objects, tokens, [keys] * layers,
                                    saliency_per_layer=[tokens if efficient else 0] * layers,
                                    d_model=cfg.d_model, kv_dim=cfg.mem_dim, dim_feedforward=cfg.memory_attention_ffn_dim)
    total += prompt_encoder_flops(objects, 0, False, False, e, cfg.d_model)
    total += mask_decoder_flops(objects, 1, e, cfg.d_model, mlp_dim=cfg.decoder_mlp_dim, attention_maps=efficient)
    total += object_pointer_flops(objects, cfg.d_model)
    total += memory_encoder_flops(objects, cfg.image_size, cfg.d_model, cfg.mem_dim)
    return total


IDEAL_MODELS = ("sam2.1_hiera_large", "sam2.1_hiera_base_plus")
"""The models (at their 1024 px) whose FLOP-ideal speed-up every fidelity and accuracy result reports."""


def ideal_speedups(kept_windows: float, kept_memory: float, objects: int = 1,
                   models: Sequence[str] = IDEAL_MODELS, context: bool = False, reuse: bool = False
                   ) -> dict[str, float]:
    """{model: FLOP-ideal end-to-end speed-up of a tracked frame} at these kept fractions (see
    `tracked_frame_flops`, also for `context` and `reuse`): what a sparsity measured on any model would buy on
    each of `models`."""
    from ..configs import get_config

    out = {}
    for name in models:
        cfg = get_config(name)
        dense = tracked_frame_flops(cfg, 1.0, 1.0, objects, efficient=False)
        out[name] = dense / tracked_frame_flops(cfg, kept_windows, kept_memory, objects, efficient=True,
                                                context=context, reuse=reuse)
    return out
