"""Atomic output files of a training run (see efficient_sam2.io.atomic)."""

import csv
from collections.abc import Iterable, Sequence

from ..io.atomic import atomic_open, atomic_torch_save

__all__ = ["atomic_open", "atomic_torch_save", "write_csv"]


def write_csv(path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """A CSV file with `header` and `rows`, written atomically."""
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
