"""Frozen configuration dataclasses and the registry of named models: Meta's eight SAM 2 / SAM 2.1 models and our
micro SAM 2.1 (trained here, shipped in the package).

Every architectural number lives here; modules take plain arguments derived from these configs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = [
    "HieraConfig",
    "SAM2Config",
    "MODEL_CONFIGS",
    "MODEL_ALIASES",
    "get_config",
    "resolve_model_name",
    "available_models",
    "OFFICIAL_MODELS",
    "MICRO",
]


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk hyper-parameters (the HieraDet variant used by SAM 2)."""

    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_pos_embed_bkg_spatial_size: tuple[int, int]
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0

    @property
    def depth(self) -> int:
        return sum(self.stages)

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """Index of the last block of every stage."""
        ends, total = [], 0
        for n in self.stages:
            total += n
            ends.append(total - 1)
        return tuple(ends)

    @property
    def q_pool_blocks(self) -> tuple[int, ...]:
        """Indices of the stage-transition blocks that pool the queries (first block of stages 2..q_pool+1)."""
        return tuple(end + 1 for end in self.stage_ends[: self.q_pool])

    @property
    def stage_dims(self) -> tuple[int, ...]:
        return tuple(int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages)))

    @property
    def stage_heads(self) -> tuple[int, ...]:
        return tuple(int(self.num_heads * self.head_mul**i) for i in range(len(self.stages)))

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Output channels per stage, from the coarsest (stride 32) to the finest (stride 4)."""
        return tuple(reversed(self.stage_dims))


@dataclass(frozen=True)
class SAM2Config:
    """Everything needed to build one SAM 2 / SAM 2.1 model.

    `image_size` may be lowered (a multiple of 32) so that tests run fast; all other sizes follow from it.
    """

    name: str
    version: str  # "2.1" or "2"
    hiera: HieraConfig
    image_size: int = 1024
    backbone_stride: int = 16
    d_model: int = 256  # neck / prompt / decoder / memory-attention width
    mem_dim: int = 64  # memory encoder output channels
    num_maskmem: int = 7
    memory_temporal_stride: int = 1
    max_obj_ptrs_in_encoder: int = 16
    max_cond_frames_in_attn: int = -1
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    num_memory_attention_layers: int = 4
    memory_attention_ffn_dim: int = 2048  # hidden width of the memory-attention feed-forwards
    decoder_mlp_dim: int = 2048  # hidden width of the mask decoder's two-way transformer MLPs
    # SAM 2 (July 2024) and SAM 2.1 (Sept 2024) differ only in these four flags.
    no_obj_embed_spatial: bool = True
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    # Post-processing switched on by the reference builders (apply_postprocessing=True).
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    binarize_mask_from_pts_for_mem_enc: bool = False
    # Radius (model-input pixels) of the seed disks drawn around positive clicks into the mask prompt when no mask
    # prompt is given; 0 = off (SAM 2). For models whose decoder cannot read a click's position from the image
    # features alone (see PromptEncoder.click_seeds).
    click_seed_radius: float = 0.0
    # Draw a box prompt into the same seeds, as the filled box (off in SAM 2).
    box_seeds: bool = False
    # At inference, a decoder call that asks for one mask on real clicks or a box returns the best-scored of the
    # three multimask outputs instead of the single-mask output (off in SAM 2; for models whose single-mask output
    # was never learned for prompted frames, see MaskDecoder).
    single_output_from_best: bool = False
    # A mask prompt that comes with clicks (a correction click on a previous mask) is given to the decoder in the
    # seeds' form: the mask, minus disks at negative clicks, plus disks at positive ones (off in SAM 2; for models
    # trained with seeds, see PromptEncoder.seeded_mask_prompt).
    seed_mask_prompts: bool = False
    # Click seed radii (model-input pixels) a prompt with positive clicks is decoded at, at inference: every radius
    # (and, for a correction on a previous mask or with negative clicks, also the positive clicks alone) gives three
    # candidate masks, and the candidates that agree with most clicks (positive inside, negative outside) win, then
    # the higher predicted IoU (modeling/click_candidates.py). () = one decode at click_seed_radius (SAM 2). For
    # models whose masks follow the seed's size (the micro model) and whose decoder reads negative clicks poorly.
    # Emptied when click_seed_radius is 0.
    click_seed_radii: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.version not in ("2", "2.1"):
            raise ValueError(f"version must be '2' or '2.1', got {self.version!r}")
        if self.image_size <= 0 or self.image_size % 32 != 0:
            raise ValueError(f"image_size must be a positive multiple of 32, got {self.image_size}")
        if self.memory_temporal_stride < 1:
            raise ValueError(f"memory_temporal_stride must be >= 1, got {self.memory_temporal_stride}")
        if self.num_maskmem < 1:
            raise ValueError(f"num_maskmem must be >= 1, got {self.num_maskmem}")
        if not self.click_seed_radius >= 0:
            raise ValueError(f"click_seed_radius must be >= 0, got {self.click_seed_radius}")
        radii = tuple(float(r) for r in self.click_seed_radii) if self.click_seed_radius > 0 else ()
        if radii and not min(radii) > 0:
            raise ValueError(f"click_seed_radii must be positive, got {radii}")
        object.__setattr__(self, "click_seed_radii", radii)  # without click seeds there is nothing to vary

    @property
    def embed_size(self) -> int:
        """Side of the stride-16 feature map (64 at 1024 px)."""
        return self.image_size // self.backbone_stride

    @property
    def low_res_mask_size(self) -> int:
        """Side of the decoder's mask logits (256 at 1024 px)."""
        return self.embed_size * 4

    def replace(self, **changes) -> "SAM2Config":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(sorted(f.name for f in dataclasses.fields(self) if f.name not in ("name", "hiera")))
            raise TypeError(f"unknown config override(s) {unknown}; valid overrides: {valid}")
        return dataclasses.replace(self, **changes)


_HIERA = {
    "tiny": HieraConfig(
        embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9),
        window_pos_embed_bkg_spatial_size=(7, 7),
    ),
    "small": HieraConfig(
        embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13),
        window_pos_embed_bkg_spatial_size=(7, 7),
    ),
    "base_plus": HieraConfig(
        embed_dim=112, num_heads=2, stages=(2, 3, 16, 3), global_att_blocks=(12, 16, 20),
        window_pos_embed_bkg_spatial_size=(14, 14),
    ),
    "large": HieraConfig(
        embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
        window_pos_embed_bkg_spatial_size=(7, 7), window_spec=(8, 4, 16, 8),
    ),
}

_SAM2_FLAGS = dict(
    no_obj_embed_spatial=False,
    add_tpos_enc_to_obj_ptrs=False,
    proj_tpos_enc_in_obj_ptrs=False,
    use_signed_tpos_enc_to_obj_ptrs=False,
)


# The micro SAM 2.1: small enough to train on two CPU cores (2.4 M parameters), at a native input size of 256 px.
# Windows of 8, 4, 2 and 4 tokens a side give 8 x 8 = 64 windows in each of the first three Hiera stages and 2 x 2
# in the stride-32 one, so the stride-16 stage that SWR routes has 64 windows of 2 x 2 tokens (large has 16 at
# 1024 px): routing is at least as fine-grained as on the real models. Its stride-16 stage (blocks 2-5) has the
# shape of the real ones: a Q-pool block, a global block inside the routed span, and a last global block. Decoder
# and memory-attention MLPs are 4x the width (256) instead of SAM 2's 2048. (Trained at 128 px first, where a
# synthetic object covered one or two stride-16 tokens and could not be tracked precisely; see README.)
MICRO_HIERA = HieraConfig(
    embed_dim=32, num_heads=1, stages=(1, 1, 4, 1), global_att_blocks=(3, 5),
    window_pos_embed_bkg_spatial_size=(4, 4), window_spec=(8, 4, 2, 4),
)
MICRO = SAM2Config(
    name="sam2.1_hiera_micro", version="2.1", hiera=MICRO_HIERA, image_size=256, d_model=64, mem_dim=32,
    memory_attention_ffn_dim=256, decoder_mlp_dim=256, click_seed_radius=12.0, box_seeds=True,
    single_output_from_best=True, seed_mask_prompts=True, click_seed_radii=(12.0, 24.0, 36.0),
)
OFFICIAL_MODELS: tuple[str, ...] = tuple(
    f"{prefix}_hiera_{size}" for prefix in ("sam2.1", "sam2") for size in ("tiny", "small", "base_plus", "large")
)
"""Meta's eight models: their weights come from Meta's checkpoint files."""


def _make_registry() -> dict[str, SAM2Config]:
    registry = {}
    for size, hiera in _HIERA.items():
        registry[f"sam2.1_hiera_{size}"] = SAM2Config(name=f"sam2.1_hiera_{size}", version="2.1", hiera=hiera)
        registry[f"sam2_hiera_{size}"] = SAM2Config(
            name=f"sam2_hiera_{size}", version="2", hiera=hiera, **_SAM2_FLAGS
        )
    registry[MICRO.name] = MICRO
    return registry


MODEL_CONFIGS: dict[str, SAM2Config] = _make_registry()

_SHORT = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
MODEL_ALIASES: dict[str, str] = {}
for _size, _short in _SHORT.items():
    MODEL_ALIASES[_size] = f"sam2.1_hiera_{_size}"
    for _prefix in ("sam2.1", "sam2"):
        # the reference's config-file names, e.g. "sam2.1_hiera_b+" or "sam2.1_hiera_b+.yaml"
        MODEL_ALIASES[f"{_prefix}_hiera_{_short}"] = f"{_prefix}_hiera_{_size}"
        MODEL_ALIASES[f"{_prefix}_hiera_{_short}.yaml"] = f"{_prefix}_hiera_{_size}"
        MODEL_ALIASES[f"{_prefix}_hiera_{_size}.pt"] = f"{_prefix}_hiera_{_size}"
MODEL_ALIASES["micro"] = MICRO.name
MODEL_ALIASES["base+"] = "sam2.1_hiera_base_plus"
MODEL_ALIASES["b+"] = "sam2.1_hiera_base_plus"


def available_models() -> list[str]:
    return sorted(MODEL_CONFIGS)


def resolve_model_name(name: str) -> str:
    """Canonical model name for `name` (a registry name, an alias such as "large", or a reference config name)."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    key = name.strip()
    if key in MODEL_CONFIGS:
        return key
    if key in MODEL_ALIASES:
        return MODEL_ALIASES[key]
    key_l = key.lower().replace("-", "_")
    if key_l in MODEL_CONFIGS:
        return key_l
    if key_l in MODEL_ALIASES:
        return MODEL_ALIASES[key_l]
    raise ValueError(
        f"unknown model name {name!r}; choose one of: {', '.join(available_models())} "
        f"(aliases: tiny, small, base_plus, large, micro mean SAM 2.1)"
    )


def get_config(name: str, **overrides) -> SAM2Config:
    """The registry config for `name`, with dataclass-field overrides (e.g. image_size=512)."""
    cfg = MODEL_CONFIGS[resolve_model_name(name)]
    return cfg.replace(**overrides) if overrides else cfg
