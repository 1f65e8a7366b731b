"""`efficient-sam2 download`: fetch official SAM 2 / SAM 2.1 checkpoints from Meta's public URLs."""

from __future__ import annotations

import argparse
import sys

from ..configs import available_models

DESCRIPTION = """\
Download official SAM 2 / SAM 2.1 checkpoints from Meta's public URLs
(https://dl.fbaipublicfiles.com/segment_anything_2/092824/ for SAM 2.1, .../072824/ for SAM 2).

The transfer is resumable: bytes go to <file>.part and an interrupted download continues with an HTTP Range request
(automatically up to --retries times, or by running the same command again). The finished file is checked against
--sha256 when given, renamed to its final name, and its SHA-256 is printed and written to <file>.sha256. Meta does not
publish checksums of these files, so without --sha256 the hash is recorded but not verified.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("download", help="download official SAM 2 / SAM 2.1 checkpoints",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"model(s) to download: {', '.join(available_models())}, the aliases tiny, small, "
                        "base_plus, large (SAM 2.1), or 'all'")
    p.add_argument("--dir", default="checkpoints", help="destination folder (default: ./checkpoints)")
    p.add_argument("--sha256", default=None, metavar="HEX",
                   help="expected SHA-256 of the file (one NAME only); a mismatch deletes the download")
    p.add_argument("--url", default=None,
                   help="download from this URL instead of Meta's (a mirror; one NAME only)")
    p.add_argument("--overwrite", action="store_true", help="replace a file that already exists")
    p.add_argument("--retries", type=int, default=3,
                   help="automatic resumes of an interrupted transfer before giving up (default 3)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds without data before a connection counts as lost (default 60)")
    p.add_argument("--list", action="store_true", help="list the known checkpoints and their URLs, and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    # Imported here so that nothing but this subcommand ever loads the downloader.
    from ..download import CHECKPOINTS, DownloadError, checkpoint_info, download_checkpoint

    if args.list:
        for info in CHECKPOINTS.values():
            print(f"{info.name:24s} {info.url}")
        return 0
    if not args.names:
        print("error: give at least one NAME (or --list)", file=sys.stderr)
        return 2
    names = list(CHECKPOINTS) if args.names == ["all"] else args.names
    if len(names) > 1 and (args.sha256 or args.url):
        print("error: --sha256 and --url apply to a single NAME", file=sys.stderr)
        return 2
    if args.retries < 0 or args.timeout <= 0:
        print("error: --retries must be >= 0 and --timeout > 0", file=sys.stderr)
        return 2
    try:
        infos = [checkpoint_info(n) for n in names]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for info in infos:
        try:
            path = download_checkpoint(info.name, args.dir, url=args.url, sha256=args.sha256,
                                       overwrite=args.overwrite, progress=not args.no_progress,
                                       retries=args.retries, timeout=args.timeout)
        except (ValueError, FileExistsError, DownloadError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        digest = open(f"{path}.sha256", encoding="utf-8").read().split()[0]
        verified = "verified" if (args.sha256 or info.sha256) else "not verified: no published checksum"
        print(f"{path}  sha256 {digest} ({verified}; recorded in {path}.sha256)")
    return 1 if failed else 0
