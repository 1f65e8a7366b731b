"""SAM 2: one tracking step, from a frame's pixels to its mask logits, object pointer and memory.

The model is stateless. Callers (the predictors) own the per-video history and pass, for every step, the memory
frames and object pointers to attend to. Two optional plans make the accelerated path explicit:
`WindowPlan` (which windows of the routed Hiera span to compute) goes to `forward_image`, and `MemoryPlan` (which
memory tokens each memory-attention layer reads) goes to `condition_on_memory`. `None` is the dense reference path.

Shapes below use B = batch (objects), E = image_size / 16 (64 at 1024 px), S = image_size, C = 256, Cm = 64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import SAM2Config
from . import click_candidates
from .common import MLP
from .hiera import Hiera
from .mask_decoder import MaskDecoder, MaskDecoderOutput
from .memory_attention import MemoryAttention, MemoryPlan
from .memory_encoder import MemoryEncoder
from .neck import FpnNeck, ImageEncoder
from .position_encoding import get_1d_sine_pe
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer

NO_OBJ_SCORE = -1024.0  # mask logit written where the object is predicted absent


@dataclass
class BackboneFeatures:
    """Image features of one or more frames (batch B).

    high_res: [(B, 32, 4E, 4E), (B, 64, 2E, 2E)] decoder skip features (already projected by conv_s0/conv_s1).
    vision: (B, C, E, E) the stride-16 feature map; vision_pos: (B, C, E, E) its sine position encoding.
    """

    high_res: list[torch.Tensor]
    vision: torch.Tensor
    vision_pos: torch.Tensor

    def expand(self, batch: int) -> "BackboneFeatures":
        """The same features viewed `batch` times (no copy) for B = 1 inputs."""
        if self.vision.shape[0] == batch:
            return self
        return BackboneFeatures(
            high_res=[f.expand(batch, -1, -1, -1) for f in self.high_res],
            vision=self.vision.expand(batch, -1, -1, -1),
            vision_pos=self.vision_pos.expand(batch, -1, -1, -1),
        )

    def select(self, index: int) -> "BackboneFeatures":
        return BackboneFeatures(
            high_res=[f[index : index + 1] for f in self.high_res],
            vision=self.vision[index : index + 1],
            vision_pos=self.vision_pos[index : index + 1],
        )


@dataclass
class PointPrompt:
    """Clicks in model-input pixel coordinates: coords (B, N, 2) as (x, y) in [0, S], labels (B, N) int.

    Labels: 1 positive, 0 negative, 2 / 3 box top-left / bottom-right, -1 padding.
    """

    coords: torch.Tensor
    labels: torch.Tensor

    @property
    def num_points(self) -> int:
        return self.labels.shape[1]

    def cat(self, other: "PointPrompt") -> "PointPrompt":
        return PointPrompt(torch.cat([self.coords, other.coords], 1), torch.cat([self.labels, other.labels], 1))


@dataclass
class DecoderOutput:
    """Output of the SAM heads for B prompts.

    multimask_logits (B, M, 4E, 4E); ious (B, M); low_res (B, 1, 4E, 4E) and high_res (B, 1, S, S) are the chosen
    masks; obj_ptr (B, C); object_score_logits (B, 1); saliency (B, E*E) decoder token->image attention, if asked.
    """

    multimask_logits: torch.Tensor
    ious: torch.Tensor
    low_res: torch.Tensor
    high_res: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor
    saliency: torch.Tensor | None = None


@dataclass
class MemoryFrame:
    """One spatial memory entry for B objects: features (B, Cm, E, E) and its temporal slot.

    t_pos 0 is a conditioning frame; t_pos k >= 1 is the k-th most distant of the recent frames (slot
    num_maskmem - 1 is frame t-1).
    """

    features: torch.Tensor
    t_pos: int
    frame_idx: int = -1


@dataclass
class ObjectPointer:
    """An object pointer (B, C) and its signed temporal distance to the current frame."""

    pointer: torch.Tensor
    distance: int
    frame_idx: int = -1


@dataclass
class StepOutput:
    """What one tracking step keeps for later frames (B objects).

    maskmem_features (B, Cm, E, E) bf16 or None; pred_masks (B, 1, 4E, 4E) fp32 logits; obj_ptr (B, C);
    object_score_logits (B, 1). `decoder` holds the full decoder output of this step (not stored long term).
    """

    pred_masks: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor
    maskmem_features: torch.Tensor | None = None
    pred_masks_high_res: torch.Tensor | None = None
    decoder: DecoderOutput | None = field(default=None, repr=False)
    memory_saliency: list[torch.Tensor] | None = field(default=None, repr=False)


class SAM2Model(nn.Module):
    """The SAM 2 / SAM 2.1 network. Parameter names match the official checkpoints exactly."""

    def __init__(self, cfg: SAM2Config) -> None:
        super().__init__()
        self.cfg = cfg
        C, Cm, E, S = cfg.d_model, cfg.mem_dim, cfg.embed_size, cfg.image_size
        self.image_size = S
        self.hidden_dim = C
        self.mem_dim = Cm
        self.num_maskmem = cfg.num_maskmem

        trunk = Hiera(cfg.hiera)
        self.image_encoder = ImageEncoder(trunk, FpnNeck(C, cfg.hiera.channel_list), scalp=1)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.memory_attention = MemoryAttention(
            d_model=C, num_layers=cfg.num_memory_attention_layers, kv_in_dim=Cm,
            dim_feedforward=cfg.memory_attention_ffn_dim
        )
        self.memory_encoder = MemoryEncoder(out_dim=Cm, in_dim=C)
        self.sam_prompt_encoder = PromptEncoder(
            embed_dim=C, image_embedding_size=(E, E), input_image_size=(S, S), mask_in_chans=16,
            click_seed_radius=cfg.click_seed_radius, box_seeds=cfg.box_seeds,
            seed_mask_prompts=cfg.seed_mask_prompts,
        )
        self.sam_mask_decoder = MaskDecoder(
            transformer_dim=C,
            transformer=TwoWayTransformer(depth=2, embedding_dim=C, mlp_dim=cfg.decoder_mlp_dim, num_heads=8),
            num_multimask_outputs=3,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
            use_high_res_features=True,
            iou_prediction_use_sigmoid=True,
            pred_obj_scores=True,
            pred_obj_scores_mlp=True,
            use_multimask_token_for_obj_ptr=True,
            dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
            single_output_from_best=cfg.single_output_from_best,
        )
        self.obj_ptr_proj = MLP(C, C, C, 3)
        self.obj_ptr_tpos_proj = nn.Linear(C, Cm) if cfg.proj_tpos_enc_in_obj_ptrs else None

        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, Cm))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, C))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, C))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, C))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, Cm)) if cfg.no_obj_embed_spatial else None
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr):
            nn.init.trunc_normal_(p, std=0.02)
        if self.no_obj_embed_spatial is not None:
            nn.init.trunc_normal_(self.no_obj_embed_spatial, std=0.02)

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    # ------------------------------------------------------------------ image
    def forward_image(self, images: torch.Tensor, window_plan=None) -> BackboneFeatures:
        """Encode normalised images (B, 3, S, S). `window_plan` routes the Hiera stride-16 stage (None = dense)."""
        if window_plan is None:
            out = self.image_encoder(images)
        else:
            out = self.image_encoder(images, window_plan=window_plan)
        fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
        high_res = [self.sam_mask_decoder.conv_s0(fpn[0]), self.sam_mask_decoder.conv_s1(fpn[1])]
        return BackboneFeatures(high_res=high_res, vision=fpn[2], vision_pos=pos[2])

    # ------------------------------------------------------------------ SAM heads
    def decode(
        self,
        image_embed: torch.Tensor,
        high_res: list[torch.Tensor],
        points: PointPrompt | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
        return_saliency: bool = False,
        search_clicks: bool = True,
    ) -> DecoderOutput:
        """Prompt encoder + mask decoder on memory-conditioned features `image_embed` (B, C, E, E).

        Without points a single padding point is used; `mask_input` (B, 1, h, w) logits become the dense prompt.
        Where the object score is <= 0 every mask logit becomes NO_OBJ_SCORE and the pointer becomes `no_obj_ptr`.
        `search_clicks=False` turns off the click candidates of `cfg.click_seed_radii` (training: the decoder's
        own outputs are what is trained).
        """
        B, device = image_embed.shape[0], image_embed.device
        if points is None:
            points = PointPrompt(
                torch.zeros(B, 1, 2, device=device), -torch.ones(B, 1, dtype=torch.int32, device=device)
            )
        mask_prompt = None
        if mask_input is not None:
            size = self.sam_prompt_encoder.mask_input_size
            mask_prompt = mask_input.float()
            if tuple(mask_prompt.shape[-2:]) != tuple(size):
                mask_prompt = F.interpolate(mask_prompt, size=size, mode="bilinear", align_corners=False,
                                            antialias=True)
        token_mask = None
        if return_saliency:
            # the prompt encoder appends one padding point; padding points do not count towards saliency
            labels = points.labels
            token_mask = torch.cat([labels != -1, torch.zeros_like(labels[:, :1], dtype=torch.bool)], 1)
        out = self.run_sam_heads(image_embed, high_res, (points.coords, points.labels), mask_prompt, multimask,
                                 return_attention=return_saliency, sparse_token_mask=token_mask,
                                 search_clicks=search_clicks)
        masks, ious, tokens, obj_scores = out.masks, out.ious, out.tokens, out.object_score_logits
        saliency = out.saliency

        present = obj_scores > 0  # (B, 1)
        masks = torch.where(present[:, :, None, None], masks, NO_OBJ_SCORE).float()
        high = F.interpolate(masks, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        token = tokens[:, 0]
        if multimask:
            best = ious.argmax(dim=-1) if out.best is None else out.best
            rows = torch.arange(B, device=device)
            low_best, high_best = masks[rows, best].unsqueeze(1), high[rows, best].unsqueeze(1)
            if tokens.shape[1] > 1:
                token = tokens[rows, best]
        else:
            low_best, high_best = masks, high
        obj_ptr = self.obj_ptr_proj(token)
        present_f = present.to(obj_ptr.dtype)
        obj_ptr = present_f * obj_ptr + (1 - present_f) * self.no_obj_ptr
        return DecoderOutput(masks, ious, low_best, high_best, obj_ptr, obj_scores, saliency)

    def run_sam_heads(
        self,
        image_embed: torch.Tensor,
        high_res: list[torch.Tensor],
        points: tuple[torch.Tensor, torch.Tensor] | None,
        mask_prompt: torch.Tensor | None,
        multimask: bool,
        return_attention: bool = False,
        sparse_token_mask: torch.Tensor | None = None,
        search_clicks: bool = True,
    ) -> MaskDecoderOutput:
        """The prompt encoder and mask decoder for B prompt sets: what `decode` and the image predictor run.

        points: (coords (B, N, 2) in input pixels, labels (B, N)) as in `PointPrompt`, or None (no sparse
        tokens); mask_prompt (B, 1, 4E, 4E) logits or None; image_embed and high_res of batch B (or 1 with B = 1).
        With `cfg.click_seed_radii` (at inference, `search_clicks`) the rows that hold a positive click are
        decoded as candidates (`click_candidates.search`) and the output's `best` names the output their clicks
        select.
        """
        search = None
        if self.cfg.click_seed_radii and search_clicks and not self.training and points is not None:
            search = (points[1] == 1).any(dim=1)
        if search is None or not bool(search.any()):
            return self._plain_heads(image_embed, high_res, points, mask_prompt, multimask, return_attention,
                                     sparse_token_mask)
        if bool(search.all()):
            return click_candidates.search(self, image_embed, high_res, points, mask_prompt, multimask,
                                           return_attention, sparse_token_mask)
        # a mixed batch (rows are objects, image rows included): each part decoded its own way, then merged
        searched, plain = search.nonzero()[:, 0], (~search).nonzero()[:, 0]
        take = lambda t, rows: None if t is None else t[rows]  # noqa: E731

        def part(rows: torch.Tensor) -> tuple:
            return (image_embed[rows], [h[rows] for h in high_res], (points[0][rows], points[1][rows]),
                    take(mask_prompt, rows), multimask, return_attention, take(sparse_token_mask, rows))

        found = click_candidates.search(self, *part(searched))
        rest = self._plain_heads(*part(plain))

        def merge(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
            if a is None:
                return None
            out = a.new_empty((search.shape[0],) + tuple(a.shape[1:]))
            out[searched], out[plain] = a, b.to(a.dtype)
            return out

        return MaskDecoderOutput(
            merge(found.masks, rest.masks), merge(found.ious, rest.ious), merge(found.tokens, rest.tokens),
            merge(found.object_score_logits, rest.object_score_logits), merge(found.saliency, rest.saliency),
            merge(found.best, rest.ious.argmax(dim=-1)))

    def _plain_heads(self, image_embed, high_res, points, mask_prompt, multimask, return_attention,
                     sparse_token_mask) -> MaskDecoderOutput:
        """One decode of each prompt set (SAM 2's way); arguments as in `run_sam_heads`."""
        sparse, dense = self.sam_prompt_encoder(points=points, boxes=None, masks=mask_prompt)
        return self.sam_mask_decoder(
            image_embeddings=image_embed, image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
            repeat_image=False, high_res_features=high_res, return_attention=return_attention,
            sparse_token_mask=sparse_token_mask, prompted=None if points is None else (points[1] >= 0).any(dim=1),
        )

    def mask_as_output(
        self, raw_feat: torch.Tensor, high_res: list[torch.Tensor], mask: torch.Tensor
    ) -> DecoderOutput:
        """Use a binary mask (B, 1, S, S) as the frame's output; the decoder only provides the object pointer.

        `raw_feat` is the frame's un-conditioned feature map (B, C, E, E).
        """
        mask = mask.float()
        high = mask * 20.0 - 10.0
        low = F.interpolate(high, size=(high.shape[-2] // 4, high.shape[-1] // 4), mode="bilinear",
                            align_corners=False, antialias=True)
        ious = mask.new_ones(mask.shape[0], 1)
        ptr = self.decode(raw_feat, high_res, mask_input=self.mask_downsample(mask)).obj_ptr
        present = (mask.flatten(1) > 0).any(dim=1, keepdim=True).to(ptr.dtype)
        obj_scores = present * 20.0 - 10.0
        ptr = present * ptr + (1 - present) * self.no_obj_ptr
        return DecoderOutput(low, ious, low, high, ptr, obj_scores)

    # ------------------------------------------------------------------ memory
    def memory_layout(
        self, memories: list[MemoryFrame], pointers: list[ObjectPointer], num_frames: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Concatenate memory frames and pointers into memory tokens (B, M, Cm) and their encodings (B, M, Cm).

        Returns (memory, memory_pos, num_obj_ptr_tokens). Spatial frames come first in the order given, each
        E*E tokens; then every pointer split into C / Cm tokens (pointer-major order).
        """
        feats, poss = [], []
        pos_spatial = None
        for m in memories:
            f = m.features
            B, Cm, H, W = f.shape
            if pos_spatial is None:
                pos_spatial = self.memory_encoder.position_encoding.encode(H, W, f.device, torch.float32)
                pos_spatial = pos_spatial.flatten(1).transpose(0, 1)  # (HW, Cm)
            feats.append(f.flatten(2).transpose(1, 2))
            tpos = self.maskmem_tpos_enc[self.num_maskmem - m.t_pos - 1].reshape(1, 1, Cm)
            poss.append((pos_spatial.unsqueeze(0) + tpos).expand(B, -1, -1))
        num_ptr_tokens = 0
        if pointers:
            B = pointers[0].pointer.shape[0]
            C, Cm = self.hidden_dim, self.mem_dim
            ptrs = torch.stack([p.pointer for p in pointers], dim=1)  # (B, P, C)
            if self.cfg.add_tpos_enc_to_obj_ptrs:
                max_ptrs = min(num_frames, self.cfg.max_obj_ptrs_in_encoder)
                dist = torch.tensor([p.distance for p in pointers], device=ptrs.device, dtype=torch.float32)
                tdim = C if self.cfg.proj_tpos_enc_in_obj_ptrs else Cm
                tpos = get_1d_sine_pe(dist / max(max_ptrs - 1, 1), dim=tdim)
                if self.obj_ptr_tpos_proj is not None:
                    tpos = self.obj_ptr_tpos_proj(tpos)
                tpos = tpos.unsqueeze(0).expand(B, -1, -1)  # (B, P, Cm)
            else:
                tpos = ptrs.new_zeros(B, len(pointers), Cm)
            split = C // Cm
            feats.append(ptrs.reshape(B, len(pointers) * split, Cm))
            poss.append(tpos.repeat_interleave(split, dim=1))
            num_ptr_tokens = len(pointers) * split
        # spatial memories are stored in bf16; compute in the dtype of the pointers / parameters
        dtype = self.no_mem_embed.dtype
        memory = torch.cat([f.to(dtype) for f in feats], dim=1)
        memory_pos = torch.cat(poss, dim=1).to(dtype)
        return memory, memory_pos, num_ptr_tokens

    def condition_on_memory(
        self,
        feats: BackboneFeatures,
        memories: list[MemoryFrame],
        pointers: list[ObjectPointer],
        num_frames: int,
        memory_plan: MemoryPlan | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Memory-conditioned features (B, C, E, E), plus per-layer memory saliency if the plan asks for it.

        With no memory at all (an initial conditioning frame) the features simply get `no_mem_embed`.
        """
        x = feats.vision
        B, C, H, W = x.shape
        if not memories and not pointers:
            return x + self.no_mem_embed.reshape(1, C, 1, 1), None
        memory, memory_pos, num_ptr_tokens = self.memory_layout(memories, pointers, num_frames)
        curr = x.flatten(2).transpose(1, 2)
        curr_pos = feats.vision_pos.flatten(2).transpose(1, 2)
        out = self.memory_attention(curr, curr_pos, memory, memory_pos, num_ptr_tokens, memory_plan=memory_plan)
        return out.features.transpose(1, 2).reshape(B, C, H, W), out.saliency

    def encode_memory(
        self,
        raw_feat: torch.Tensor,
        high_res_masks: torch.Tensor,
        object_score_logits: torch.Tensor,
        binarize: bool,
    ) -> torch.Tensor:
        """Spatial memory (B, Cm, E, E) of a frame from its raw features (B, C, E, E) and mask logits (B,1,S,S)."""
        if binarize:
            mask = (high_res_masks > 0).to(raw_feat.dtype)
        else:
            mask = torch.sigmoid(high_res_masks)
        mask = mask * self.cfg.sigmoid_scale_for_mem_enc + self.cfg.sigmoid_bias_for_mem_enc
        out = self.memory_encoder(raw_feat, mask, skip_mask_sigmoid=True)
        features = out["vision_features"]
        if self.no_obj_embed_spatial is not None:
            absent = (object_score_logits <= 0).to(features.dtype)  # (B, 1)
            features = features + absent[:, :, None, None] * self.no_obj_embed_spatial[:, :, None, None]
        return features

    # ------------------------------------------------------------------ one step
    def use_multimask(self, is_init_cond_frame: bool, points: PointPrompt | None) -> bool:
        """Multimask output for 0- and 1-click frames (propagated frames included), as SAM 2.1 is configured."""
        n = 0 if points is None else points.num_points
        return 0 <= n <= 1

    def track_step(
        self,
        feats: BackboneFeatures,
        memories: list[MemoryFrame],
        pointers: list[ObjectPointer],
        num_frames: int,
        points: PointPrompt | None = None,
        mask: torch.Tensor | None = None,
        prev_mask_logits: torch.Tensor | None = None,
        is_init_cond_frame: bool = False,
        run_mem_encoder: bool = True,
        memory_plan: MemoryPlan | None = None,
        return_saliency: bool = False,
    ) -> StepOutput:
        """Segment one frame for B objects that share the memory layout.

        mask: (B, 1, S, S) binary prompt (used directly as the output); points: click prompt; prev_mask_logits:
        (B, 1, 4E, 4E) earlier logits on this frame, fed with new clicks. Memory lists are ignored for mask prompts
        and must be empty for initial conditioning frames.
        """
        saliency = None
        if mask is not None:
            dec = self.mask_as_output(feats.vision, feats.high_res, mask)
        else:
            pix, saliency = self.condition_on_memory(feats, memories, pointers, num_frames, memory_plan)
            dec = self.decode(
                pix, feats.high_res, points=points, mask_input=prev_mask_logits,
                multimask=self.use_multimask(is_init_cond_frame, points), return_saliency=return_saliency,
            )
        out = StepOutput(
            pred_masks=dec.low_res, obj_ptr=dec.obj_ptr, object_score_logits=dec.object_score_logits,
            pred_masks_high_res=dec.high_res, decoder=dec, memory_saliency=saliency,
        )
        if run_mem_encoder:
            binarize = self.cfg.binarize_mask_from_pts_for_mem_enc and points is not None
            out.maskmem_features = self.encode_memory(feats.vision, dec.high_res, dec.object_score_logits, binarize)
        return out
