"""The `efficient-sam2` command line: one entry point with a subcommand per task.

Each subcommand lives in `efficient_sam2.commands.<name>` and provides `register(subparsers)`, which adds its
parser and sets `func` (called with the parsed arguments; its return value is the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# subcommand name -> module in efficient_sam2.commands
COMMANDS = {
    "demo": "demo",
    "track": "track",
    "vos": "vos",
    "eval": "evaluate",
    "download": "download",
    "bench": "bench",
    "train": "train",
    "train-shortcut": "train_shortcut",
    "train-prompts": "train_prompts",
    "automask": "automask",
    "stream": "stream",
    "synth": "synth",
    "serve": "serve",
}


def _available_commands():
    for name, module in COMMANDS.items():
        try:
            yield name, importlib.import_module(f"efficient_sam2.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"efficient_sam2.commands.{module}":
                raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="efficient-sam2",
        description="Fast SAM 2 video object segmentation: Sparse Window Routing and Sparse Memory Retrieval "
        "on a checkpoint-compatible SAM 2 / SAM 2.1 implementation.",
    )
    parser.add_argument("--version", action="version", version=f"efficient-sam2 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _, module in _available_commands():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .commands.common import warnings_as_notes

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        parser.print_help()
        return 2
    if unknown:  # reported with the subcommand's usage, not the top-level one
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        with warnings_as_notes():
            code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


if __name__ == "__main__":
    sys.exit(main())
