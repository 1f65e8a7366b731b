"""`python -m efficient_sam2 ...` (also what `torchrun -m efficient_sam2 vos ...` runs)."""

import sys

from .cli import main

sys.exit(main())
