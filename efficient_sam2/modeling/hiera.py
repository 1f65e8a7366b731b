"""Hiera trunk of the SAM 2 image encoder (the "HieraDet" variant).

Pixels (B, 3, S, S) are embedded into a stride-4 token grid kept channels-last, (B, H, W, C), for the whole
trunk. Four stages of pre-norm transformer blocks follow; the first block of stages 2-4 halves the grid by
max-pooling its queries ("Q-pooling") and doubles the width. Blocks attend inside non-overlapping windows
except for a few global-attention blocks in stage 3. The layout of the blocks (stage, widths, windows, pooling,
the routed span) is the trunk's `HieraGeometry`, which the FLOP model reads as well.

The pieces are kept separate so that Sparse Window Routing can run a block on a gathered subset of windows:

    x_norm = block.norm1(x)
    windows, padded_hw = window_partition(x_norm, block.window_size)    # (B*nW, w, w, C)
    out = block.attention(windows[kept])                                 # any subset of windows
    ...                                                                  # scatter / shortcut
    x = block.mlp_residual(x)                                            # any token layout (..., C)

`Hiera.forward` is the dense path: every window of every block. On the CPU, big windowed blocks run band by band
and big MLPs in row chunks (`kernels.windowed_block`, `kernels.residual_mlp`): the same computation, in cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from efficient_sam2.configs import HieraConfig
from efficient_sam2.modeling import kernels
from efficient_sam2.modeling.common import MLP
from efficient_sam2.modeling.hiera_geometry import HieraGeometry
from efficient_sam2.modeling.window_plan import WindowPlan, WindowResiduals

__all__ = ["Hiera", "HieraBlock", "WindowPlan", "WindowResiduals", "WindowedAttention", "PatchEmbed",
           "window_partition", "window_unpartition", "max_pool_tokens"]


# ----------------------------------------------------------------------------------------------------------------
# Token-grid helpers (channels-last)
# ----------------------------------------------------------------------------------------------------------------


def _version(t: torch.Tensor) -> int:
    """In-place version counter of `t`; inference tensors have none (and cannot be changed outside inference
    mode), so they count as version -1."""
    try:
        return t._version
    except RuntimeError:
        return -1


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split a token grid into non-overlapping square windows.

    Args:
        x: (B, H, W, C) tokens. The bottom / right border is zero-padded up to a multiple of `window`.
        window: window side w.
    Returns:
        windows: (B * nW, w, w, C), ordered batch-major, then window rows, then window columns (row-major),
            where nW = (Hp / w) * (Wp / w).
        (Hp, Wp): the padded grid size.
    """
    B, H, W, C = x.shape
    pad_h = -H % window
    pad_w = -W % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.reshape(B, Hp // window, window, Wp // window, window, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, C)
    return windows, (Hp, Wp)


def window_unpartition(windows: torch.Tensor, padded_hw: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of `window_partition`: reassemble windows into a grid and crop the padding.

    Args:
        windows: (B * nW, w, w, C); the window side w is read from the tensor.
        padded_hw: (Hp, Wp), the padded grid size (multiples of w).
        hw: (H, W) <= (Hp, Wp), the size to crop to.
    Returns:
        (B, H, W, C) tokens (a view of a fresh tensor when cropping was needed).
    """
    Hp, Wp = padded_hw
    H, W = hw
    window, C = windows.shape[1], windows.shape[-1]
    nh, nw = Hp // window, Wp // window
    x = windows.reshape(-1, nh, nw, window, window, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, Hp, Wp, C)
    if Hp != H or Wp != W:
        x = x[:, :H, :W, :]
    return x


def max_pool_tokens(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Non-overlapping max-pool of a channels-last grid (floor mode: incomplete border rows/cols are dropped).

    Args:
        x: (N, H, W, *C) with any number of trailing feature dims (pooled independently).
        stride: (sh, sw), kernel = stride.
    Returns:
        (N, H // sh, W // sw, *C).
    """
    N, H, W = x.shape[:3]
    feat = x.shape[3:]
    pooled = F.max_pool2d(x.reshape(N, H, W, -1).permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return pooled.permute(0, 2, 3, 1).reshape(N, pooled.shape[-2], pooled.shape[-1], *feat)


# ----------------------------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution: (B, 3, S, S) -> (B, S/4, S/4, C) channels-last (a permuted view)."""

    def __init__(self, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class WindowedAttention(nn.Module):
    """Multi-head self-attention over each item of a batch of token sets, optionally with Q-pooling.

    The input width `dim` is projected to `dim_out` for q, k and v. With `q_stride`, the queries (only) are
    max-pooled over the item's 2-D grid, so the output grid is smaller than the input grid.
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None = None) -> None:
        super().__init__()
        if dim_out % num_heads:
            raise ValueError(f"dim_out={dim_out} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim_out // num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, h, w, dim) grids, or (N, L, dim) flat token sets when there is no Q-pooling.

        Returns (N, h', w', dim_out) with (h', w') = (h, w) // q_stride, or (N, L, dim_out).
        """
        nh, hd = self.num_heads, self.head_dim
        N = x.shape[0]
        grid = x.shape[1:-1]
        qkv = self.qkv(x).view(*x.shape[:-1], 3, nh, hd)
        q, k, v = qkv.unbind(-3)  # each (N, *grid, nh, hd)
        if self.q_stride is not None:
            if len(grid) != 2:
                raise ValueError("Q-pooling needs (N, h, w, C) grids, got flat tokens")
            q = max_pool_tokens(q, self.q_stride)
            grid = q.shape[1:3]
        q = q.reshape(N, -1, nh, hd).transpose(1, 2)
        k = k.reshape(N, -1, nh, hd).transpose(1, 2)
        v = v.reshape(N, -1, nh, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, nh, Lq, hd)
        out = out.transpose(1, 2).reshape(N, *grid, nh * hd)
        return self.proj(out)

    def attend_with_context(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Flat tokens x (N, L, dim) attend to themselves and to `context` (N, M, dim) tokens that get no output
        (keys and values only): (N, L, dim_out). Without Q-pooling; equals `forward` on the concatenation, rows
        of x."""
        nh, hd = self.num_heads, self.head_dim
        N, L = x.shape[:2]
        q, k, v = self.qkv(x).view(N, L, 3, nh, hd).unbind(2)
        dim_out = nh * hd
        ck, cv = F.linear(context, self.qkv.weight[dim_out:], self.qkv.bias[dim_out:]).view(
            N, context.shape[1], 2, nh, hd).unbind(2)
        k, v = torch.cat([k, ck], 1), torch.cat([v, cv], 1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(N, L, dim_out))


class HieraBlock(nn.Module):
    """Pre-norm transformer block: (windowed) attention with an optional stage transition, then an MLP.

    On a stage-transition block (dim != dim_out) the residual branch is maxpool(proj(norm1(x))) and the queries
    are pooled by `q_stride`, halving the grid. `window_size` 0 means global attention.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        window_size: int,
        q_stride: tuple[int, int] | None = None,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if q_stride is not None and window_size > 0 and (window_size % q_stride[0] or window_size % q_stride[1]):
            raise ValueError(f"window {window_size} is not divisible by the Q-pool stride {q_stride}")
        if q_stride is not None and window_size > 0 and q_stride[0] != q_stride[1]:
            raise ValueError(f"windowed Q-pooling needs a square stride, got {q_stride}")
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = WindowedAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=nn.GELU)
        self.proj = nn.Linear(dim, dim_out) if dim != dim_out else None

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the MLP."""
        return self.mlp.layers[0].out_features

    @property
    def out_window_size(self) -> int:
        """Window side of the attention output (window_size / q_stride on Q-pool blocks)."""
        if self.q_stride is None or self.window_size == 0:
            return self.window_size
        return self.window_size // self.q_stride[0]

    def shortcut(self, x: torch.Tensor, x_norm: torch.Tensor) -> torch.Tensor:
        """Residual branch: x (B, H, W, dim) itself, or maxpool(proj(x_norm)) (B, H', W', dim_out) on transitions."""
        if self.proj is None:
            return x
        s = self.proj(x_norm)
        return max_pool_tokens(s, self.q_stride) if self.q_stride is not None else s

    def attention(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Attention on already-normalised token sets: windows (N, w, w, dim) -> (N, w', w', dim_out), or
        flat sets (N, L, dim) -> (N, L, dim_out) for global blocks (no residual added)."""
        return self.attn(x_norm)

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        """x + MLP(norm2(x)) for tokens of any leading shape (..., dim_out); in cache-sized row chunks on the CPU
        when the hidden activation is big (`kernels.residual_mlp`)."""
        return kernels.residual_mlp(self._mlp, x, self.mlp_hidden)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H', W', dim_out), (H', W') = (H, W) // q_stride on Q-pool blocks.

        A big windowed block on the CPU runs band by band (`kernels.windowed_block`).
        """
        return kernels.windowed_block(self._forward, x, self.window_size, self.q_stride, self.mlp_hidden)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x_norm = self.norm1(x)
        shortcut = self.shortcut(x, x_norm)
        return self.mlp_residual(shortcut + self._attend(x_norm, shortcut.shape[1:3]))

    def _attend(self, x_norm: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        """Attention of a normalised grid (B, H, W, dim) window by window (or global) -> (B, *out_hw, dim_out)."""
        if self.window_size == 0:
            return self.attention(x_norm)
        windows, (Hp, Wp) = window_partition(x_norm, self.window_size)
        out = self.attention(windows)
        if self.q_stride is not None:
            Hp, Wp = Hp // self.q_stride[0], Wp // self.q_stride[1]
        return window_unpartition(out, (Hp, Wp), out_hw)


class Hiera(nn.Module):
    """Hiera trunk: (B, 3, S, S) -> four stage-end maps, channels-first, finest first.

    Outputs for embed_dim C: (B, C, S/4, S/4), (B, 2C, S/8, S/8), (B, 4C, S/16, S/16), (B, 8C, S/32, S/32).
    S (height and width) must be a multiple of 32.
    """

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.geometry = HieraGeometry.of(cfg)
        self.stage_ends = list(self.geometry.stage_ends)
        self.q_pool_blocks = list(self.geometry.q_pool_blocks)
        self.global_att_blocks = list(self.geometry.global_blocks)

        C = cfg.embed_dim
        self.patch_embed = PatchEmbed(C)
        self.pos_embed = nn.Parameter(torch.zeros(1, C, *cfg.window_pos_embed_bkg_spatial_size))
        w0 = cfg.window_spec[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, C, w0, w0))
        blocks = [
            HieraBlock(b.dim, b.dim_out, b.num_heads, b.window, b.q_stride, cfg.mlp_ratio)
            for b in self.geometry.blocks
        ]
        self.blocks = nn.ModuleList(blocks)
        # output channels, coarsest first (the neck's `backbone_channel_list`)
        self.channel_list = [self.blocks[i].dim_out for i in reversed(self.stage_ends)]
        self._pos_cache: tuple | None = None

    # -- position embedding -------------------------------------------------------------------------------------

    def _compute_pos_embed(self, h: int, w: int) -> torch.Tensor:
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic", align_corners=False)
        win = self.pos_embed_window
        pos = pos + win.tile(1, 1, h // win.shape[-2], w // win.shape[-1])
        return pos.permute(0, 2, 3, 1).contiguous()  # (1, h, w, C)

    def get_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """(1, h, w, C): bicubic-resized background embedding + tiled window embedding.

        Cached across calls when no gradient is needed; the cache is keyed on the parameters' in-place
        version counters so loading new weights invalidates it.
        """
        if torch.is_grad_enabled() and (self.pos_embed.requires_grad or self.pos_embed_window.requires_grad):
            return self._compute_pos_embed(h, w)
        # The cache holds the parameter storages alive, so a matching data_ptr cannot belong to a new tensor.
        params = (self.pos_embed.detach(), self.pos_embed_window.detach())
        key = (h, w, self.pos_embed.dtype) + tuple((p.data_ptr(), _version(p)) for p in params)
        if self._pos_cache is None or self._pos_cache[0] != key:
            with torch.no_grad():
                self._pos_cache = (key, self._compute_pos_embed(h, w), params)
        return self._pos_cache[1]

    # -- forward ------------------------------------------------------------------------------------------------

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        if H % 32 or W % 32 or H == 0 or W == 0:
            raise ValueError(f"image height and width must be positive multiples of 32, got {H}x{W}")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding plus absolute position embedding: (B, 3, H, W) -> (B, H/4, W/4, C) contiguous."""
        self.check_input(x)
        x = self.patch_embed(x)
        pos = self.get_pos_embed(x.shape[1], x.shape[2])
        # `pos` first so that the sum is laid out channels-last contiguous; no cast, so that under autocast the
        # residual stream stays in the parameters' dtype as in the reference
        return pos + x

    @property
    def routed_span(self) -> tuple[int, int]:
        """(first, last): blocks first..last-1 of the stride-16 stage are routed; block `last`, the stage's last
        global block, runs densely over the reassembled map (`HieraGeometry.routed_span`)."""
        return self.geometry.routed_span

    @property
    def routed_window(self) -> int:
        """Window side of the routed span."""
        return self.geometry.routed_window

    @property
    def routed_dim(self) -> int:
        """Channel width of the routed span (the shortcut's width)."""
        return self.geometry.routed_dim

    def forward(self, x: torch.Tensor, window_plan: WindowPlan | None = None) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [(B, C, H/4, W/4), (B, 2C, H/8, W/8), (B, 4C, H/16, W/16), (B, 8C, H/32, W/32)].

        With a `window_plan`, the routed span of the stride-16 stage computes only the kept windows.
        """
        x = self.embed(x)
        outputs = []
        ends = set(self.stage_ends)
        first, last = self.routed_span if window_plan is not None else (-1, -1)
        i = 0
        while i < len(self.blocks):
            if i == first:
                x = self._routed_forward(x, window_plan, first, last)
                i = last
                continue
            x = self.blocks[i](x)
            if i in ends:
                outputs.append(x.permute(0, 3, 1, 2))
            i += 1
        return outputs

    def _routed_forward(self, x: torch.Tensor, plan: WindowPlan, first: int, last: int) -> torch.Tensor:
        """Blocks first..last-1 on the kept windows only, gathered into a smaller batch; background windows go
        once through `plan.shortcut`. x: (B, H, W, C) -> (B, H, W, C)."""
        B, H, W, C = x.shape
        w = self.routed_window
        windows, (Hp, Wp) = window_partition(x, w)  # (B * nW, w, w, C)
        nW = (Hp // w) * (Wp // w)
        keep = plan.keep.to(device=x.device, dtype=torch.long)
        if keep.numel() and (int(keep.min()) < 0 or int(keep.max()) >= nW):
            raise ValueError(f"window plan keeps windows {keep.tolist()} of a {Hp // w}x{Wp // w} grid")
        K = keep.numel()
        offsets = torch.arange(B, device=x.device)[:, None] * nW
        kept_idx = (offsets + keep[None]).flatten()  # (B * K,)
        is_bg = torch.ones(B * nW, dtype=torch.bool, device=x.device)
        is_bg[kept_idx] = False
        bg_idx = is_bg.nonzero().flatten()

        kept_inputs = kept = windows[kept_idx]  # (B * K, w, w, C); the blocks never write into it
        padded = (Hp, Wp) != (H, W)
        reuse = plan.residuals if B == 1 else None
        context = plan.context and K < nW
        depths: dict[int, torch.Tensor] = {}  # kept states entering the global blocks deeper in the span
        if K:
            # raster position of every token of the kept windows (-1 on padding); global blocks read the real
            # tokens in raster order, so that keeping every window reproduces the dense computation exactly
            raster_all = torch.arange(1, H * W + 1, device=x.device, dtype=torch.float32).view(1, H, W, 1)
            raster_all = window_partition(raster_all, w)[0].flatten(1).long() - 1  # (nW, w * w)
            raster = raster_all[keep].flatten()  # (K * w * w,)
            real = raster.ge(0).nonzero().flatten()
            real = real[raster[real].argsort()]
            valid_kept = (raster >= 0).view(K, w, w, 1).to(x.dtype)
            if context:
                bg_keep = torch.ones(nW, dtype=torch.bool, device=x.device)
                bg_keep[keep] = False
                bg_keep = bg_keep.nonzero().flatten()
                bg_real = raster_all[bg_keep].flatten().ge(0).nonzero().flatten()  # their real tokens
                bg_real_of = lambda some: raster_all[bg_keep[some]].flatten().ge(0).nonzero().flatten()  # noqa: E731
                bg_inputs = windows.view(B, nW, w, w, -1)[:, bg_keep]  # (B, nW - K, w, w, C): the span's input
        for i in range(first, last):
            if not K:
                break
            blk = self.blocks[i]
            if blk.window_size > 0:
                xn = blk.norm1(kept)
                if padded and plan.padding == "zero":
                    xn = (xn.view(B, K, w, w, -1) * valid_kept.to(xn.dtype)).view_as(xn)
                kept = kept + blk.attention(xn)
                if plan.padding == "zero":
                    # the MLP runs on the real tokens only, in raster order, exactly as in the dense block
                    flat = kept.reshape(B, K * w * w, -1)
                    flat[:, real] = blk.mlp_residual(flat[:, real])
                    kept = flat.reshape(B * K, w, w, -1)
                else:
                    kept = blk.mlp_residual(kept)
            else:
                # global block: attend over the kept windows' real tokens (and, with context, the background's)
                tokens = kept.reshape(B, K * w * w, -1)[:, real]
                if plan.context and reuse is not None and i > first:
                    depths[i] = kept
                ctx = None
                if context and i == first:  # the span's input: exactly the background's state here
                    ctx = bg_inputs.reshape(B, -1, C)[:, bg_real]
                elif context and reuse is not None:  # deeper: only windows whose state here is carried over
                    states, have = reuse.apply(bg_keep, bg_inputs[0], nW, depth=i)
                    if bool(have.any()):
                        ctx = states[have][None].reshape(1, -1, C)[:, bg_real_of(have)]
                if ctx is not None:
                    attended = blk.attn.attend_with_context(blk.norm1(tokens), blk.norm1(ctx))
                else:
                    attended = blk.attention(blk.norm1(tokens))
                tokens = blk.mlp_residual(tokens + attended)
                full = tokens.new_zeros(B, K * w * w, tokens.shape[-1])
                full[:, real] = tokens
                kept = full.reshape(B * K, w, w, -1)

        background = windows[bg_idx]
        if reuse is not None and K:
            reuse.store(keep, kept_inputs, kept, nW, depths)
        if background.shape[0]:
            todo = None  # background windows that go through the shortcut (None: all)
            if reuse is not None:
                inputs = background
                background, have = reuse.apply(bg_idx, inputs, nW)
                todo = (~have).nonzero().flatten()
            if plan.shortcut is not None:
                if todo is None:
                    background = plan.shortcut(background)
                elif todo.numel():
                    background = background.clone()
                    background[todo] = plan.shortcut(inputs[todo]).to(background.dtype)
        dtype = kept.dtype if K else background.dtype
        merged = torch.empty(B * nW, w, w, kept.shape[-1] if K else C, dtype=dtype, device=x.device)
        if K:
            merged[kept_idx] = kept
        if bg_idx.numel():
            merged[bg_idx] = background.to(dtype)
        return window_unpartition(merged, (Hp, Wp), (H, W))
