"""Prompt encoder: turns clicks, boxes and mask prompts into the decoder's sparse and dense prompt embeddings.

Points and box corners become one token each (a random-Fourier position code plus a learned embedding for the
prompt kind); a mask prompt becomes a dense (embed_dim, E, E) map via a small strided conv stack, and the absence
of a mask becomes one learned vector broadcast over the E x E grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d

__all__ = ["RandomFourierPositionEncoding", "PromptEncoder"]

# Point label convention shared with the reference: -1 padding ("not a point"), 0 negative click,
# 1 positive click, 2 box top-left corner, 3 box bottom-right corner.
PAD_LABEL = -1
NUM_POINT_KINDS = 4
SEED_LOGIT = 10.0  # mask-prompt logit inside a click seed (its negative outside)


class RandomFourierPositionEncoding(nn.Module):
    """Position code from random spatial frequencies (Tancik et al., "Fourier features").

    A normalised coordinate c in [0, 1]^2 is mapped to [sin(f), cos(f)] with f = 2*pi * (2c - 1) @ G, where G is a
    fixed Gaussian (2, num_pos_feats) matrix. G is a buffer stored in the checkpoint
    (`positional_encoding_gaussian_matrix`), so it must be loaded, never re-drawn.
    """

    def __init__(self, num_pos_feats: int = 128, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0 else scale
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(2, num_pos_feats))

    def encode_unit(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) coordinates (x, y) in [0, 1] -> (..., 2 * num_pos_feats) code, [sin part, cos part]."""
        freqs = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        freqs = 2 * math.pi * freqs
        return torch.cat([freqs.sin(), freqs.cos()], dim=-1)

    def encode_pixels(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """(B, N, 2) pixel coordinates (x, y) of an image of size (H, W) -> (B, N, 2 * num_pos_feats)."""
        height, width = image_size
        coords = coords.float()
        return self.encode_unit(coords / coords.new_tensor([width, height]))

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Code of the cell centres of an (h, w) grid: (2 * num_pos_feats, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)  # (h, w, 2) as (x, y)
        return self.encode_unit(grid).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Embeds point / box / mask prompts for the mask decoder.

    Args:
        embed_dim: width of the prompt embeddings (256).
        image_embedding_size: (E_h, E_w) of the image embedding the decoder attends to (64, 64 at 1024 px).
        input_image_size: (H, W) of the encoder input, the frame in which prompt coordinates are given.
        mask_in_chans: hidden channels of the mask-prompt conv stack (16).
        click_seed_radius: > 0 turns on click seeds (see `click_seeds`); 0 (SAM 2) leaves them off.
        box_seeds: also draw a box prompt into the seeds, as the filled box (see `click_seeds`); False in SAM 2.
        seed_mask_prompts: when a mask prompt comes with clicks (a correction), give the decoder the mask in the
            seeds' form instead of its logits (see `seeded_mask_prompt`); False in SAM 2.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int = 16,
        click_seed_radius: float = 0.0,
        box_seeds: bool = False,
        seed_mask_prompts: bool = False,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.click_seed_radius = float(click_seed_radius)
        self.box_seeds = bool(box_seeds)
        self.seed_mask_prompts = bool(seed_mask_prompts)
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.mask_input_size = (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])

        self.pe_layer = RandomFourierPositionEncoding(embed_dim // 2)
        # 0 negative click, 1 positive click, 2 box top-left, 3 box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(NUM_POINT_KINDS))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        # (B, 1, 4E, 4E) -> (B, embed_dim, E, E)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Position code of every image-embedding cell, (1, embed_dim, E_h, E_w)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _kind_table(self) -> torch.Tensor:
        """(6, embed_dim) rows indexed by label + 1: not-a-point, the four point kinds, then zeros (unknown label)."""
        rows = [self.not_a_point_embed.weight] + [e.weight for e in self.point_embeddings]
        rows.append(torch.zeros_like(self.not_a_point_embed.weight))
        return torch.cat(rows, dim=0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """(B, N, 2) pixel coords + (B, N) labels -> (B, N + pad, embed_dim) point tokens.

        With `pad`, one not-a-point token at (0, 0) is appended (the reference does so whenever no box is given).
        Padding tokens carry only `not_a_point_embed`; the others are position code + their kind's embedding.
        """
        coords = coords.float() + 0.5  # pixel centres
        labels = labels.long()
        if pad:
            b = coords.shape[0]
            coords = torch.cat([coords, coords.new_zeros(b, 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((b, 1), PAD_LABEL)], dim=1)
        pe = self.pe_layer.encode_pixels(coords, self.input_image_size)
        is_pad = (labels == PAD_LABEL).unsqueeze(-1)
        known = (labels >= PAD_LABEL) & (labels < NUM_POINT_KINDS)
        kind = torch.where(known, labels + 1, NUM_POINT_KINDS + 1)
        return torch.where(is_pad, torch.zeros_like(pe), pe) + self._kind_table()[kind]

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 4) boxes (x0, y0, x1, y1) in pixels -> (B, 2, embed_dim) corner tokens."""
        corners = boxes.float().reshape(-1, 2, 2) + 0.5
        pe = self.pe_layer.encode_pixels(corners, self.input_image_size)
        corner_kind = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0)
        return pe + corner_kind

    def _disks(self, coords: torch.Tensor, keep: torch.Tensor, radius: float | torch.Tensor | None = None
               ) -> torch.Tensor:
        """(B, 1, 4E_h, 4E_w) bool: union of the disks of radius `click_seed_radius` input pixels (or `radius`: one
        for the batch or (B,), one per row) around the clicks (B, N, 2) that `keep` (B, N) marks, on the
        mask-prompt grid (cell centres)."""
        mh, mw = self.mask_input_size
        h, w = self.input_image_size
        sy, sx = mh / h, mw / w
        ys = torch.arange(mh, device=coords.device, dtype=torch.float32) + 0.5
        xs = torch.arange(mw, device=coords.device, dtype=torch.float32) + 0.5
        inside = torch.zeros(coords.shape[0], 1, mh, mw, dtype=torch.bool, device=coords.device)
        r = self.click_seed_radius
        if r > 0 and bool(keep.any()):
            if radius is not None:
                r = torch.as_tensor(radius, dtype=torch.float32, device=coords.device).reshape(-1, 1, 1, 1)
            cx, cy = coords[..., 0].float() * sx, coords[..., 1].float() * sy  # (B, N)
            dist2 = ((xs[None, None, None, :] - cx[..., None, None]) / (r * sx)) ** 2 + \
                ((ys[None, None, :, None] - cy[..., None, None]) / (r * sy)) ** 2  # (B, N, mh, mw), 1 = on the circle
            inside |= ((dist2 <= 1.0) & keep[..., None, None]).any(dim=1, keepdim=True)
        return inside

    def seeded_mask_prompt(self, masks: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A mask prompt with clicks, in the seeds' form: (B, 1, h, w) logits + clicks -> (B, 1, 4E_h, 4E_w).

        The mask (logits > 0, resized to the mask-prompt grid) with the disks of the negative clicks (label 0)
        carved out and those of the positive clicks (label 1) added, as SEED_LOGIT inside and -SEED_LOGIT outside.
        A model trained on seeds only (the micro model) reads a previous mask given as logits poorly (its outputs
        collapse: BENCHMARKS.md "Boxes and correction clicks"), but refines a seed region like a box seed; the
        disks tell it where the correction clicks are.
        """
        if tuple(masks.shape[-2:]) != self.mask_input_size:
            masks = F.interpolate(masks.float(), size=self.mask_input_size, mode="bilinear", align_corners=False)
        region = masks > 0
        region &= ~self._disks(coords, labels == 0)
        region |= self._disks(coords, labels == 1)
        return torch.where(region, SEED_LOGIT, -SEED_LOGIT).to(masks.dtype)

    def click_seeds(self, coords: torch.Tensor, labels: torch.Tensor, radius: float | torch.Tensor | None = None,
                    regions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask prompt that click seeds give: (seeds (B, 1, 4E_h, 4E_w), has_seed (B,) bool).

        Every positive click (label 1) at (x, y) input pixels becomes a disk of radius `click_seed_radius` input
        pixels (or `radius`, one or (B,): larger seeds ask for larger masks); with `box_seeds`, a row's box (its
        first label-2 corner and first label-3 corner) becomes the filled box. Logits SEED_LOGIT inside disks and
        box, -SEED_LOGIT elsewhere, on the mask-prompt grid (cell centres).
        A row with neither has no seed (has_seed False). `regions` (B, h, w) bool, where given, are drawn in too
        (resized to the mask-prompt grid by nearest neighbour: a token grid's cell becomes its 4 x 4 cells), a seed
        shaped like the region the prompt stands for (automatic masks: `attention_prompts.region_masks`). The seed
        gives the decoder the prompt's place through the dense prompt, which a model whose image features drown
        the prompt's position code (the micro model: BENCHMARKS.md "Click seeds") needs; its training draws the
        same seeds.
        """
        mh, mw = self.mask_input_size
        h, w = self.input_image_size
        sy, sx = mh / h, mw / w
        ys = torch.arange(mh, device=coords.device, dtype=torch.float32) + 0.5
        xs = torch.arange(mw, device=coords.device, dtype=torch.float32) + 0.5
        cx = coords[..., 0].float() * sx  # (B, N) on the mask-prompt grid
        cy = coords[..., 1].float() * sy
        positive = labels == 1
        has_seed = positive.any(dim=1) if self.click_seed_radius > 0 else torch.zeros_like(positive[:, 0])
        inside = self._disks(coords, positive, radius)
        if self.box_seeds:
            tl, br = labels == 2, labels == 3
            has_box = tl.any(dim=1) & br.any(dim=1)
            if bool(has_box.any()):
                i0, i1 = tl.int().argmax(dim=1), br.int().argmax(dim=1)  # first corner of each kind
                rows = torch.arange(coords.shape[0], device=coords.device)
                x0, x1 = cx[rows, i0], cx[rows, i1]
                y0, y1 = cy[rows, i0], cy[rows, i1]
                x0, x1 = torch.minimum(x0, x1), torch.maximum(x0, x1)
                y0, y1 = torch.minimum(y0, y1), torch.maximum(y0, y1)
                box = ((xs[None, None, :] >= x0[:, None, None]) & (xs[None, None, :] <= x1[:, None, None])
                       & (ys[None, :, None] >= y0[:, None, None]) & (ys[None, :, None] <= y1[:, None, None]))
                inside |= (box & has_box[:, None, None])[:, None]
                has_seed = has_seed | has_box
        if regions is not None and self.click_seed_radius > 0:
            drawn = F.interpolate(regions[:, None].float(), size=(mh, mw), mode="nearest") > 0
            inside |= drawn
            has_seed = has_seed | drawn.flatten(1).any(dim=1)
        seeds = torch.where(inside, SEED_LOGIT, -SEED_LOGIT)
        return seeds, has_seed

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) mask logits -> (B, embed_dim, E_h, E_w); resized to 4E x 4E (antialiased) if needed."""
        if tuple(masks.shape[-2:]) != self.mask_input_size:
            masks = F.interpolate(masks.float(), size=self.mask_input_size, mode="bilinear", align_corners=False,
                                  antialias=True)
        return self.mask_downscaling(masks.to(self.no_mask_embed.weight.dtype))

    def embed_masks_sparse(self, masks: torch.Tensor, background: float) -> torch.Tensor:
        """`embed_masks` of (B, 1, 4E_h, 4E_w) logits that mostly equal `background` (click seeds): every output
        cell depends only on its own 4 x 4 input patch (two 2 x 2 stride-2 convolutions, then per-cell layer norms,
        GELUs and a 1 x 1 convolution), so the cells whose patch is all `background` share one embedding, computed
        once, and only the others are computed (a seed disk touches about 9 of 256 cells at 256 px). Equal to
        `embed_masks` up to float rounding; under autograd it is `embed_masks`."""
        eh, ew = self.image_embedding_size
        if torch.is_grad_enabled() or tuple(masks.shape[-2:]) != (4 * eh, 4 * ew):
            return self.embed_masks(masks)
        dtype = self.no_mask_embed.weight.dtype
        batch = masks.shape[0]
        patches = masks.to(dtype).reshape(batch, eh, 4, ew, 4).transpose(2, 3).reshape(batch, eh * ew, 16)
        plain = torch.full((1, 1, 4, 4), background, dtype=dtype, device=masks.device)
        out = self.mask_downscaling(plain).reshape(1, -1, 1).repeat(batch, 1, eh * ew)  # (B, C, cells)
        rows, cells = (patches != background).any(dim=2).nonzero(as_tuple=True)
        if rows.numel():
            out[rows, :, cells] = self.mask_downscaling(patches[rows, cells].reshape(-1, 1, 4, 4)).flatten(1)
        return out.reshape(batch, -1, eh, ew)

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        seed_radius: float | torch.Tensor | None = None,
        seed_regions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed the prompts of a batch.

        Args:
            points: (coords (B, N, 2) as (x, y) in input-image pixels, labels (B, N) int) or None.
            boxes: (B, 4) as (x0, y0, x1, y1) in input-image pixels, or None.
            masks: (B, 1, h, w) mask logits, or None.
            seed_radius: the click seeds' radius in input pixels instead of `click_seed_radius`, one for the batch
                or (B,) one per row (only where click seeds are on).
            seed_regions: (B, h, w) bool regions drawn into the click seeds too (`click_seeds`; only where click
                seeds are on).

        Returns:
            sparse: (B, N', embed_dim) tokens, points first (+1 padding token when boxes is None) then 2 box corners.
            dense: (B, embed_dim, E_h, E_w): the mask prompt's, else the seeds' for rows with a positive click
                (when `click_seed_radius` > 0) or a box (with `box_seeds`), else the no-mask embedding.
        """
        if points is not None:
            batch = points[0].shape[0]
        elif boxes is not None:
            batch = boxes.shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        else:
            batch = 1
        weight = self.no_mask_embed.weight

        tokens = [weight.new_empty(batch, 0, self.embed_dim)]
        if points is not None:
            tokens.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            tokens.append(self.embed_boxes(boxes))
        sparse = torch.cat(tokens, dim=1)

        if masks is not None:
            if self.seed_mask_prompts and points is not None:
                masks = self.seeded_mask_prompt(masks, points[0], points[1])
            return sparse, self.embed_masks(masks)
        eh, ew = self.image_embedding_size
        dense = weight.reshape(1, -1, 1, 1).expand(batch, -1, eh, ew)
        if (self.click_seed_radius > 0 or self.box_seeds) and points is not None:
            seeds, has_seed = self.click_seeds(points[0], points[1], seed_radius, seed_regions)
            if bool(has_seed.all()):
                dense = self.embed_masks_sparse(seeds, -SEED_LOGIT)
            elif bool(has_seed.any()):
                dense = torch.where(has_seed[:, None, None, None], self.embed_masks_sparse(seeds, -SEED_LOGIT),
                                    dense)
        return sparse, dense
