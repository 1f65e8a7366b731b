"""Take the README's screenshots of `efficient-sam2 serve` in headless Chromium (Playwright, Debian's chromium).

    python docs/serve_screenshots.py [--out docs] [--chromium /usr/bin/chromium]

Makes a short clip (two textured objects over a dark background), opens the page with the token URL, uploads the
clip, clicks object 1, adds object 2 from its mask, tracks both with Efficient-SAM2 and saves docs/serve_click.png
(the mask after one click) and docs/serve_tracked.png (a later frame after tracking, with the run's statistics).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import cv2
import numpy as np

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()

    import torch
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from test_serve import make_clip, object_point, write_video

    from efficient_sam2.serve import Engine, ServerThread, ServeSettings, create_app
    from efficient_sam2.serve.client import ApiClient

    torch.set_num_threads(1)
    work = tempfile.mkdtemp(prefix="serve-shots-")
    frames, ids = make_clip(n=24, h=360, w=480)
    clip = write_video(os.path.join(work, "clip.avi"), frames, "MJPG", fps=12)
    token = "screenshot-token"
    app = create_app(Engine.build("micro"), ServeSettings(token=token))
    with ServerThread(app) as url, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(os.path.join(work, "profile"), executable_path=args.chromium,
                                                    args=ARGS, headless=True, bypass_csp=True,
                                                    viewport={"width": 1360, "height": 900}, device_scale_factor=1)
        page = ctx.new_page()
        page.goto(f"{url}/?token={token}")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Ready')")
        page.set_input_files("#file-input", clip)
        page.wait_for_function("document.getElementById('status').textContent.includes('Click an object')")
        h, w = ids[0].shape
        box = page.locator("#canvas").bounding_box()
        x, y = object_point(ids[0], 1)
        page.mouse.click(box["x"] + x * box["width"] / w, box["y"] + y * box["height"] / h)
        page.wait_for_function("document.getElementById('status').textContent.includes('mask in')")
        page.wait_for_timeout(500)
        page.screenshot(path=os.path.join(args.out, "serve_click.png"))
        # object 2 from its mask through the API (as "Find objects" adds objects), then track in the page
        vid = page.evaluate("app.video.video_id")
        ApiClient(url, token).add_mask(vid, 0, 2, ids[0] == 2)
        page.evaluate("app.objects.push(2); app.prompted.get(0).add(2); renderObjects(); updateControls(); draw();")
        page.select_option("#direction", "forward")
        page.click("#track")
        page.wait_for_function("document.getElementById('track-progress').textContent.startsWith('tracked')",
                               timeout=300_000)
        page.focus("#slider")
        for _ in range(16):
            page.keyboard.press("ArrowRight")
        page.wait_for_function("document.getElementById('canvas').dataset.frame === '16'")
        page.wait_for_timeout(500)
        page.screenshot(path=os.path.join(args.out, "serve_tracked.png"))
        ctx.close()
    print(f"wrote {args.out}/serve_click.png and {args.out}/serve_tracked.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
