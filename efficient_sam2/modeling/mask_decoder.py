"""SAM 2 mask decoder: output tokens + prompt tokens -> mask logits, IoU estimates, object score.

Token layout entering the two-way transformer (with object scores, as in every SAM 2 model):

    [obj_score, iou, mask_0, mask_1, mask_2, mask_3, sparse prompt tokens ...]

mask_0 is the single-mask output, mask_1..3 the multimask (ambiguity) outputs. After the transformer, the image
tokens are upsampled 4x with the high-resolution backbone features mixed in, and each mask token's hypernetwork MLP
gives the weights of a per-pixel dot product that produces its mask.

Every call returns a `MaskDecoderOutput`; with `return_attention=True` its `saliency` holds a saliency map over
the image tokens (see `decoder_saliency`), the input of the Sparse Window Routing router, else None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer

__all__ = ["MaskDecoder", "MaskDecoderOutput", "decoder_saliency", "mask_stability_score"]


@dataclass
class MaskDecoderOutput:
    """What `MaskDecoder.forward` returns, M = 3 with multimask output else 1.

    masks: (B, M, 4E, 4E) mask logits.
    ious: (B, M) predicted IoUs.
    tokens: (B, 3, C) the multimask tokens with multimask output (and use_multimask_token_for_obj_ptr), else
        (B, 1, C) the single-mask token; the input of the object pointer.
    object_score_logits: (B, 1) object presence logit.
    saliency: (B, E*E) decoder saliency (rows sum to 1, see `decoder_saliency`) when asked for with
        `return_attention`, else None.
    best: (B,) index of the output the prompt's clicks select, where candidates were searched
        (`SAM2Model.run_sam_heads`); None: the highest predicted IoU is the best.
    """

    masks: torch.Tensor
    ious: torch.Tensor
    tokens: torch.Tensor
    object_score_logits: torch.Tensor
    saliency: torch.Tensor | None = None
    best: torch.Tensor | None = None


def mask_stability_score(mask_logits: torch.Tensor, delta: float) -> torch.Tensor:
    """IoU between the masks thresholded at +delta and at -delta: (..., H, W) -> (...).

    1 where the looser mask is empty.
    """
    logits = mask_logits.flatten(-2)
    inner = (logits > delta).sum(-1).float()
    outer = (logits > -delta).sum(-1).float()
    return torch.where(outer > 0, inner / outer.clamp(min=1), torch.ones_like(outer))


def decoder_saliency(attention: list[torch.Tensor], token_weights: torch.Tensor) -> torch.Tensor:
    """Average token -> image attention: list of (B, heads, N, HW) probabilities + (B, N) token weights -> (B, HW).

    The mean runs over the attention layers, the heads and the tokens (weighted by `token_weights`, 0 = ignore);
    every row of the result sums to 1.
    """
    probs = torch.stack(attention)  # (L, B, heads, N, HW)
    num_layers, _, num_heads = probs.shape[:3]
    weights = token_weights.to(probs.dtype)
    total = weights.sum(-1, keepdim=True) * (num_layers * num_heads)
    return torch.einsum("lbhnk,bn->bk", probs, weights) / total


class MaskDecoder(nn.Module):
    """Predicts masks from an image embedding and prompt embeddings with a two-way transformer.

    Args:
        transformer_dim: token / image width (256).
        transformer: the TwoWayTransformer (default: depth 2, 8 heads, MLP 2048, downsample 2).
        num_multimask_outputs: ambiguity outputs besides the single-mask output (3).
        iou_head_depth, iou_head_hidden_dim: the IoU-prediction MLP.
        use_high_res_features: mix stride-4 / stride-8 backbone features into the upsampling (`conv_s0`, `conv_s1`).
        iou_prediction_use_sigmoid: squash predicted IoUs into (0, 1).
        pred_obj_scores: predict an object-presence logit from a dedicated token.
        pred_obj_scores_mlp: that head is a 3-layer MLP (else one Linear).
        use_multimask_token_for_obj_ptr: with multimask output, return the 3 multimask tokens for the object
            pointer (else always the single-mask token).
        dynamic_multimask_via_stability: in eval, when one mask is asked for and the single-mask output is
            unstable (stability score below `..._thresh` at +-`..._delta`), return the best multimask output.
        single_output_from_best: in eval, when one mask is asked for on a row that `forward`'s `prompted` marks
            (real clicks or a box), return the multimask output with the highest predicted IoU, and its token,
            instead of the single-mask output (False in SAM 2; for models whose single-mask output was left weak on
            prompted frames, like the micro model: BENCHMARKS.md "Boxes and correction clicks").
    """

    def __init__(
        self,
        transformer_dim: int = 256,
        transformer: TwoWayTransformer | None = None,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = True,
        iou_prediction_use_sigmoid: bool = True,
        pred_obj_scores: bool = True,
        pred_obj_scores_mlp: bool = True,
        use_multimask_token_for_obj_ptr: bool = True,
        dynamic_multimask_via_stability: bool = False,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
        single_output_from_best: bool = False,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer if transformer is not None else TwoWayTransformer(embedding_dim=transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.pred_obj_scores = pred_obj_scores
        self.use_high_res_features = use_high_res_features
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh
        self.single_output_from_best = single_output_from_best

        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)

        # (B, C, E, E) -> (B, C/8, 4E, 4E)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)

        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            self.pred_obj_score_head = (
                MLP(transformer_dim, transformer_dim, 1, 3) if pred_obj_scores_mlp else nn.Linear(transformer_dim, 1)
            )

    @property
    def num_output_tokens(self) -> int:
        """Learned tokens placed before the prompt tokens: [obj_score,] iou, mask_0..mask_{M-1}."""
        return self.num_mask_tokens + 1 + int(self.pred_obj_scores)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
        return_attention: bool = False,
        sparse_token_mask: torch.Tensor | None = None,
        prompted: torch.Tensor | None = None,
    ) -> MaskDecoderOutput:
        """Decode masks.

        Args:
            image_embeddings: (B_img, C, E, E) image embedding; B_img = B unless `repeat_image`.
            image_pe: (1, C, E, E) from `PromptEncoder.get_dense_pe()`.
            sparse_prompt_embeddings: (B, N, C) point / box tokens.
            dense_prompt_embeddings: (B, C, E, E) mask-prompt (or no-mask) embedding.
            multimask_output: return the 3 ambiguity masks instead of one.
            repeat_image: the image embedding (B_img = 1, or B_img dividing B, each image serving B / B_img
                consecutive prompt sets) is shared by the prompt batch.
            high_res_features: [(B, C/8, 4E, 4E), (B, C/4, 2E, 2E)] projected stride-4 / stride-8 features
                (batch 1 or B_img is broadcast like the image); required when `use_high_res_features`.
            return_attention: also compute the decoder saliency map (`MaskDecoderOutput.saliency`).
            sparse_token_mask: (B, N) bool, which prompt tokens count in the saliency map (None: all).
            prompted: (B,) bool, rows whose prompt holds real clicks or a box (for `single_output_from_best`).

        Returns a `MaskDecoderOutput` (masks, ious, tokens, object_score_logits, saliency or None).
        """
        masks, iou_pred, mask_tokens_out, object_score_logits, attention = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, repeat_image,
            high_res_features, return_attention,
        )

        all_masks, all_ious = masks, iou_pred
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self._select_by_stability(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, :1], iou_pred[:, :1]

        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]
        else:
            # The single-mask token serves as the object pointer even when several masks are returned,
            # matching how the tracker was trained.
            sam_tokens_out = mask_tokens_out[:, :1]
        if (not multimask_output and self.single_output_from_best and not self.training and prompted is not None
                and bool(prompted.any())):
            best = all_ious[:, 1:].argmax(dim=-1) + 1  # (B,)
            rows = torch.arange(best.shape[0], device=best.device)
            use = prompted.to(best.device)
            masks = torch.where(use[:, None, None, None], all_masks[rows, best].unsqueeze(1), masks)
            iou_pred = torch.where(use[:, None], all_ious[rows, best].unsqueeze(1), iou_pred)
            sam_tokens_out = torch.where(use[:, None, None], mask_tokens_out[rows, best].unsqueeze(1),
                                         sam_tokens_out)

        saliency = None
        if return_attention:
            saliency = self._saliency(attention, sparse_prompt_embeddings, sparse_token_mask)
        return MaskDecoderOutput(masks, iou_pred, sam_tokens_out, object_score_logits, saliency)

    def _saliency(
        self, attention: list[torch.Tensor], sparse_prompt_embeddings: torch.Tensor,
        sparse_token_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """(B, E*E) decoder saliency: every learned output token counts, prompt tokens as `sparse_token_mask` says."""
        batch, num_prompts = sparse_prompt_embeddings.shape[:2]
        output_weights = sparse_prompt_embeddings.new_ones(batch, self.num_output_tokens, dtype=torch.float32)
        if sparse_token_mask is None:
            prompt_weights = output_weights.new_ones(batch, num_prompts)
        else:
            prompt_weights = sparse_token_mask.to(device=output_weights.device, dtype=torch.float32)
        return decoder_saliency(attention, torch.cat([output_weights, prompt_weights], dim=1))

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor] | None]:
        """All outputs before selection: masks (B, 4, 4E, 4E), iou (B, 4), mask tokens (B, 4, C),
        object score logits (B, 1), and the token -> image attention list (or None)."""
        batch = sparse_prompt_embeddings.shape[0]
        learned = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            learned.insert(0, self.obj_score_token.weight)
        output_tokens = torch.cat(learned, dim=0).unsqueeze(0).expand(batch, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)

        if repeat_image:
            image_embeddings = self._share_images(image_embeddings, batch)
        elif image_embeddings.shape[0] != batch:
            raise ValueError(
                f"image batch {image_embeddings.shape[0]} != prompt batch {batch}; pass repeat_image=True to share"
            )
        src = image_embeddings + dense_prompt_embeddings
        _, c, h, w = src.shape

        tokens, image, attention = self.transformer(src, image_pe, tokens, return_attention=return_attention)
        first_mask = 1 + int(self.pred_obj_scores)
        iou_token_out = tokens[:, first_mask - 1]
        mask_tokens_out = tokens[:, first_mask : first_mask + self.num_mask_tokens]

        upscaled = self._upscale(image.transpose(1, 2).reshape(-1, c, h, w), high_res_features, batch)
        weights = self._hypernetworks(mask_tokens_out)  # (B, M, C/8)
        b, cu, hu, wu = upscaled.shape
        masks = (weights @ upscaled.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(tokens[:, 0])
        else:
            object_score_logits = iou_pred.new_full((batch, 1), 10.0)  # "object present"
        return masks, iou_pred, mask_tokens_out, object_score_logits, attention

    @staticmethod
    def _share_images(x: torch.Tensor, batch: int) -> torch.Tensor:
        """Give each of `batch` prompt sets its image: (B_img, ...) -> (batch, ...), B_img dividing batch."""
        if x.shape[0] == 1:
            return x.expand(batch, *x.shape[1:])
        if batch % x.shape[0]:
            raise ValueError(f"prompt batch {batch} is not a multiple of the image batch {x.shape[0]}")
        return x.repeat_interleave(batch // x.shape[0], dim=0)

    def _upscale(self, image: torch.Tensor, high_res_features: list[torch.Tensor] | None, batch: int) -> torch.Tensor:
        """(B, C, E, E) transformer image tokens -> (B, C/8, 4E, 4E) per-pixel embedding."""
        if not self.use_high_res_features:
            return self.output_upscaling(image)
        if high_res_features is None:
            raise ValueError("this decoder uses high-resolution features: pass high_res_features=[feat_s0, feat_s1]")
        feat_s0, feat_s1 = (f if f.shape[0] in (1, batch) else self._share_images(f, batch) for f in high_res_features)
        up1, norm1, act1, up2, act2 = self.output_upscaling
        x = act1(norm1(up1(image) + feat_s1))
        return act2(up2(x) + feat_s0)

    def _hypernetworks(self, mask_tokens: torch.Tensor) -> torch.Tensor:
        """Each mask token through its own MLP, all in one batched product: (B, M, C) -> (B, M, C/8)."""
        mlps = self.output_hypernetworks_mlps
        num_layers = len(mlps[0].layers)
        x = mask_tokens
        for j in range(num_layers):
            weight = torch.stack([m.layers[j].weight for m in mlps])  # (M, out, in)
            bias = torch.stack([m.layers[j].bias for m in mlps])  # (M, out)
            x = torch.einsum("bmi,moi->bmo", x, weight) + bias
            if j < num_layers - 1:
                x = F.relu(x)
        return x

    def _select_by_stability(self, masks: torch.Tensor, iou_pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 4, H, W), (B, 4) -> one mask per item: the single-mask output if stable, else the multimask
        output with the highest predicted IoU."""
        best = iou_pred[:, 1:].argmax(dim=-1) + 1  # (B,)
        rows = torch.arange(masks.shape[0], device=masks.device)
        best_masks, best_iou = masks[rows, best].unsqueeze(1), iou_pred[rows, best].unsqueeze(1)

        stability = mask_stability_score(masks[:, :1], self.dynamic_multimask_stability_delta)  # (B, 1)
        stable = stability >= self.dynamic_multimask_stability_thresh
        masks = torch.where(stable[..., None, None], masks[:, :1], best_masks)
        iou_pred = torch.where(stable, iou_pred[:, :1], best_iou)
        return masks, iou_pred
