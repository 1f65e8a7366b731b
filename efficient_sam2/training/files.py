"""Atomic output files of a training run (see efficient_sam2.io.atomic)."""

from ..io.atomic import atomic_open, atomic_torch_save

__all__ = ["atomic_open", "atomic_torch_save"]
