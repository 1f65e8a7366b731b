"""Subcommands of the `efficient-sam2` command line (see efficient_sam2.cli)."""
