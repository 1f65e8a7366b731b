#!/usr/bin/env bash
# Real footage for evaluation: install Debian's opencv-doc package (if needed), then write the frames to track of
# the clips it ships (vtest, megamind, cup, box) as JPEG folders, with their first-frame prompt files.
#
#   scripts/fetch_opencv_clips.sh [OUT]        (default OUT: ./clips)
#
#   OUT/<clip>/00000.jpg ...   frames (at the clip's own resolution)
#   OUT/<clip>.prompts         first-frame masks (OUT/<clip>_00000.png), from docs/clips/ (format: io/prompts.py)
#   OUT/<clip>.clicks.prompts  the same objects as clicks (for real SAM 2 checkpoints; the micro model follows
#                              clicks only roughly, so its fidelity runs use the masks)
#   OUT/clips.json             sources, first source frame, frame counts, sizes
#
# Then e.g.: efficient-sam2 track OUT/vtest --prompts OUT/vtest.prompts --output runs/vtest --overlay runs/vtest.mp4
# The clips are not part of the repository: never commit them.
set -euo pipefail

OUT="${1:-./clips}"
DOC=/usr/share/doc/opencv-doc
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

if [ ! -d "$DOC/examples/data" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "installing opencv-doc (apt-get)..." >&2
    if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends opencv-doc; then
        $SUDO apt-get update
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends opencv-doc
    fi
fi

PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m efficient_sam2.data.clips \
    --out "$OUT" --doc-dir "$DOC" --prompts "$REPO/docs/clips"
