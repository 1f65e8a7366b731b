"""The block layout of a Hiera trunk, derived once from its `HieraConfig`.

Both the model (`Hiera` builds its blocks from it) and the FLOP model (`efficient_sam2.bench.flops`) read this one
geometry: the stage of every block, its widths and heads, its window, its query pooling, and the span of the
stride-16 stage that Sparse Window Routing routes.

    geometry = HieraGeometry.of(get_config("tiny").hiera)
    geometry.routed_span                # (4, 9): blocks 4..8 are routed, block 9 reassembles the map
    geometry.routed_window              # 14
    geometry.token_grid(4, 1024)        # 64: blocks 4.. read a 64 x 64 grid at 1024 px

The first block of a stage keeps the previous stage's window and width: it pools its queries (stages 2..q_pool+1)
and only its output has the new stage's width. Window 0 means global attention.
"""

from __future__ import annotations

from dataclasses import dataclass

from efficient_sam2.configs import HieraConfig

__all__ = ["HieraBlockSpec", "HieraGeometry"]


@dataclass(frozen=True)
class HieraBlockSpec:
    """One Hiera block: index, stage, input / output width, heads, window side (0 = global attention), query
    pooling stride (None = none) and MLP hidden width."""

    index: int
    stage: int
    dim: int
    dim_out: int
    num_heads: int
    window: int
    q_stride: tuple[int, int] | None
    mlp_hidden: int

    @property
    def is_global(self) -> bool:
        return self.window == 0


@dataclass(frozen=True)
class HieraGeometry:
    """Every block of a Hiera trunk (`blocks`) and the index of the last block of every stage (`stage_ends`)."""

    blocks: tuple[HieraBlockSpec, ...]
    stage_ends: tuple[int, ...]

    @classmethod
    def of(cls, cfg: HieraConfig) -> "HieraGeometry":
        if len(cfg.window_spec) != len(cfg.stages):
            raise ValueError(f"window_spec {tuple(cfg.window_spec)} needs one entry per stage {tuple(cfg.stages)}")
        stage_of = [s for s, n in enumerate(cfg.stages) for _ in range(n)]
        q_pool = set(cfg.q_pool_blocks)
        blocks, dim = [], cfg.embed_dim
        for i, stage in enumerate(stage_of):
            window_stage = stage_of[i - 1] if i > 0 else 0  # the first block of a stage keeps the last window
            dim_out = cfg.stage_dims[stage]
            blocks.append(HieraBlockSpec(
                index=i,
                stage=stage,
                dim=dim,
                dim_out=dim_out,
                num_heads=cfg.stage_heads[stage],
                window=0 if i in cfg.global_att_blocks else cfg.window_spec[window_stage],
                q_stride=tuple(cfg.q_stride) if i in q_pool else None,
                mlp_hidden=int(dim_out * cfg.mlp_ratio),
            ))
            dim = dim_out
        return cls(tuple(blocks), tuple(cfg.stage_ends))

    @property
    def q_pool_blocks(self) -> tuple[int, ...]:
        return tuple(b.index for b in self.blocks if b.q_stride is not None)

    @property
    def global_blocks(self) -> tuple[int, ...]:
        return tuple(b.index for b in self.blocks if b.is_global)

    @property
    def routed_span(self) -> tuple[int, int]:
        """(first, last): blocks first..last-1 of the stride-16 stage (stage 2) are routed, from the block after
        its Q-pool block; block `last`, the stage's last global block, runs densely over the reassembled map."""
        start = self.stage_ends[1] + 1  # the stage's first block (its Q-pool block)
        globals_in_stage = [g for g in self.global_blocks if start < g <= self.stage_ends[2]]
        if not globals_in_stage:
            raise ValueError("the stride-16 stage has no global block to reassemble routed windows")
        return start + 1, max(globals_in_stage)

    @property
    def routed_window(self) -> int:
        """Window side of the routed span (the windows a `WindowPlan` names)."""
        first, last = self.routed_span
        return max(b.window for b in self.blocks[first:last])

    @property
    def routed_dim(self) -> int:
        """Channel width of the routed span (the shortcut's width)."""
        return self.blocks[self.routed_span[0]].dim

    def token_grid(self, block: int, image_size: int) -> int:
        """Side of the token grid that block `block` reads, for an image_size x image_size input (stride 4
        patches, then floor-halved by every Q-pool block before it)."""
        side = image_size // 4
        for b in self.blocks[:block]:
            if b.q_stride is not None:
                side //= b.q_stride[0]
        return side
