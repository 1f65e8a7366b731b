"""Click candidates: a click prompt decoded several ways, the masks that agree with the clicks kept.

For models whose masks follow the size of their click seed and whose decoder reads negative clicks and previous
masks poorly (the micro model; `SAM2Config.click_seed_radii`, off for Meta's models): among the masks such a
decoder can give, the one the user means is usually there (BENCHMARKS.md "Click candidates"). `search` is what
`SAM2Model.run_sam_heads` runs at inference for the prompts that hold a positive click.

Shapes: B prompts, N clicks, V candidate prompts per prompt, 4E = the low-resolution mask side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .mask_decoder import MaskDecoderOutput

if TYPE_CHECKING:
    from .sam2 import SAM2Model


def candidate_prompts(labels: torch.Tensor, mask_prompt: torch.Tensor | None, radii: tuple[float, ...]
                      ) -> list[tuple[torch.Tensor, torch.Tensor | None, float | None]]:
    """The V candidate prompts of a batch as (labels, mask prompt, click-seed radius): the prompt with its click
    seeds at each radius (once when a mask prompt is given: its seeded form does not depend on the radius) and, for
    a mask prompt or negative clicks, the positive clicks and box alone (negative clicks padded out, no mask prompt)
    at each radius."""
    variants: list[tuple[torch.Tensor, torch.Tensor | None, float | None]] = []
    if mask_prompt is None:
        variants += [(labels, None, r) for r in radii]
    else:
        variants.append((labels, mask_prompt, None))
    if mask_prompt is not None or bool((labels == 0).any()):
        variants += [(labels.masked_fill(labels == 0, -1), None, r) for r in radii]
    return variants


def agreement(logits: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor, image_size: int) -> torch.Tensor:
    """(B, M) number of clicks each of M low-res masks (B, M, 4E, 4E logits) agrees with: a positive click (label 1)
    inside (logit > 0), a negative one (label 0) outside; read at the click (coords (B, N, 2) input pixels) as the
    mask upsampled to the input reads it there (bilinear, half-pixel centres)."""
    B, N = labels.shape
    grid = (coords.float() / image_size * 2 - 1).reshape(B, 1, N, 2)
    at = F.grid_sample(logits.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0]
    agree = torch.where(labels[:, None] == 1, at > 0, torch.where(labels[:, None] == 0, at <= 0, False))
    return agree.sum(-1)


def search(
    model: "SAM2Model",
    image_embed: torch.Tensor,
    high_res: list[torch.Tensor],
    points: tuple[torch.Tensor, torch.Tensor],
    mask_prompt: torch.Tensor | None,
    multimask: bool,
    return_attention: bool = False,
    sparse_token_mask: torch.Tensor | None = None,
) -> MaskDecoderOutput:
    """Decode B click prompts (each with a positive click) as V candidate prompts of three outputs each, in one
    decoder pass, and keep the outputs that agree with the clicks.

    Each output scores 2 x `agreement` + its predicted IoU (the IoU breaks ties only); output k of the result is the
    best-scored candidate of output token k (so the three stay whole / part / subpart), `best` (B,) the best-scored
    of those, and the object score, token and saliency are the chosen candidate's. With `multimask` False only the
    best is returned (M = 1). image_embed and high_res: batch B (or 1 with B = 1), as for the mask decoder.
    """
    coords, labels = points
    B = labels.shape[0]
    encoder, decoder = model.sam_prompt_encoder, model.sam_mask_decoder
    variants = candidate_prompts(labels, mask_prompt, model.cfg.click_seed_radii)
    V = len(variants)
    encoded = [encoder(points=(coords, lab), boxes=None, masks=m, seed_radius=r) for lab, m, r in variants]
    # row-major (B, V): each image row serves its V consecutive candidates
    sparse = torch.stack([e[0] for e in encoded], 1).flatten(0, 1)
    dense = torch.stack([e[1] for e in encoded], 1).flatten(0, 1)
    token_mask = None if sparse_token_mask is None else sparse_token_mask.repeat_interleave(V, 0)
    out = decoder(
        image_embeddings=image_embed, image_pe=encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense, multimask_output=True, repeat_image=True, high_res_features=high_res,
        return_attention=return_attention, sparse_token_mask=token_mask,
    )
    h, w = out.masks.shape[-2:]
    masks = out.masks.reshape(B, V, 3, h, w)
    ious = out.ious.reshape(B, V, 3)
    agree = agreement(masks.flatten(1, 2), coords, labels, model.image_size).reshape(B, V, 3)
    score = agree.float() * 2 + ious.float().clamp(0, 1)
    choice = score.argmax(dim=1)  # (B, 3): the best candidate of each output token
    rows = torch.arange(B, device=labels.device)
    k3 = torch.arange(3, device=labels.device)[None]
    masks, ious = masks[rows[:, None], choice, k3], ious[rows[:, None], choice, k3]
    tokens = out.tokens.reshape(B, V, 3, -1)[rows[:, None], choice, k3]
    best = score.gather(1, choice[:, None]).squeeze(1).argmax(dim=-1)  # (B,)
    variant = choice[rows, best]
    obj_scores = out.object_score_logits.reshape(B, V, 1)[rows, variant]
    saliency = None if out.saliency is None else out.saliency.reshape(B, V, -1)[rows, variant]
    if not multimask:
        return MaskDecoderOutput(masks[rows, best].unsqueeze(1), ious[rows, best].unsqueeze(1),
                                 tokens[rows, best].unsqueeze(1), obj_scores, saliency, torch.zeros_like(best))
    return MaskDecoderOutput(masks, ious, tokens, obj_scores, saliency, best)
