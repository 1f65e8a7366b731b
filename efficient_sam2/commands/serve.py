"""`efficient-sam2 serve`: a local web page to open a video, click objects, track, correct and export."""

from __future__ import annotations

import argparse
import os
import secrets
import sys

DESCRIPTION = """\
Serve a web page for interactive video object segmentation: open a video (upload an mp4 / mov / avi / webm or a
zip of frames, or name a file or folder here), click objects (positive and negative points, boxes), track them
forward, backward or both with dense SAM 2 or Efficient-SAM2, correct on any frame and track again, and export the
masks (palette PNGs in a zip, COCO RLE JSON, the overlay video). The page uses an HTTP API that scripts can use
too (see README "Web app").

The server listens on 127.0.0.1 unless --host says otherwise. Every /api route except /api/health needs the token:
the startup line prints the URL with it (a random one unless --token gives it). Uploads go to a private temporary
folder that is removed when a video is deleted or evicted and when the server stops (Ctrl-C).

Needs the optional dependencies: pip install "efficient-sam2[serve]".
"""


def register(subparsers) -> None:
    from .common import add_efficient_args

    p = subparsers.add_parser("serve", help="local web page: click objects, track, correct, export (HTTP API)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", metavar="VIDEO", nargs="?", default=None,
                   help="optional: a video file or folder of frames to open at start")
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; anything else is reachable from other machines)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free port)")
    s.add_argument("--token", default=None, help="the API token (default: a random one, printed in the URL)")
    s.add_argument("--no-token", action="store_true", help="no token (allowed only on a loopback --host)")
    s.add_argument("--max-upload-mb", type=float, default=500.0, help="largest upload in MB (default 500)")
    s.add_argument("--max-sessions", type=int, default=8,
                   help="videos open at once; more evict the least recently used idle one (default 8)")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    s.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default warning)")
    m = p.add_argument_group("model")
    m.add_argument("--model", default="micro", help="model name (default micro, bundled with the package)")
    m.add_argument("--checkpoint", default=None, help="checkpoint file (not needed for micro)")
    m.add_argument("--random-weights", action="store_true", help="an untrained model (tests)")
    m.add_argument("--device", default="cpu", help="torch device (default cpu)")
    m.add_argument("--image-size", type=int, default=None, help="model input size (default: the model's)")
    add_efficient_args(p)
    p.set_defaults(func=run)


def _fail(msg: str, code: int = 2) -> int:
    print(f"efficient-sam2 serve: error: {msg}", file=sys.stderr)
    return code


def run(args) -> int:
    from ..serve.settings import ServeSettings, is_loopback

    if args.no_token and args.token is not None:
        return _fail("give --token or --no-token, not both")
    if args.no_token and not is_loopback(args.host):
        return _fail(f"--no-token is allowed only on a loopback address (127.0.0.1, ::1, localhost), not on "
                     f"--host {args.host}")
    if args.token is not None and not args.token.strip():
        return _fail("--token must not be empty")
    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be in 0..65535; got {args.port}")
    if args.max_upload_mb <= 0:
        return _fail(f"--max-upload-mb must be > 0; got {args.max_upload_mb}")
    if args.max_sessions < 1:
        return _fail(f"--max-sessions must be >= 1; got {args.max_sessions}")
    if args.video is not None and not os.path.exists(args.video):
        return _fail(f"video not found: {args.video!r}")
    try:
        import python_multipart  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        return _fail(f"the web app needs the optional dependencies ({exc.name} is missing): "
                     "pip install \"efficient-sam2[serve]\"")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    token = None if args.no_token else (args.token or secrets.token_urlsafe(24))
    settings = ServeSettings(token=token, max_upload_mb=args.max_upload_mb, max_sessions=args.max_sessions,
                             efficient_default=not args.dense,
                             initial_video=os.path.abspath(args.video) if args.video else None)
    return _serve(args, settings)


def _serve(args, settings) -> int:
    from ..inference.common import check_device
    from ..serve.app import create_app
    from ..serve.engine import Engine
    from ..serve.errors import ServeError
    from ..serve.server import bind, run_server, url_of
    from ..serve.settings import is_loopback
    from .common import efficient_config_from_args, weights_from_args

    try:
        check_device(args.device)
        sock = bind(args.host, args.port)
    except (ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    try:
        # the Efficient-SAM2 options configure the page's Efficient-SAM2 side; --dense only picks the default
        efficient = efficient_config_from_args(argparse.Namespace(**{**vars(args), "dense": False}))
        engine = Engine.build(args.model, args.checkpoint, args.device, image_size=args.image_size,
                              efficient=efficient, shortcut_checkpoint=args.shortcut_checkpoint,
                              weights=weights_from_args(args))
        app = create_app(engine, settings)
    except ServeError as exc:
        sock.close()
        return _fail(exc.message, 1)
    except (ValueError, OSError, RuntimeError) as exc:
        sock.close()
        return _fail(str(exc) or type(exc).__name__, 1)
    url = url_of(sock, args.host)
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}: the page and API are reachable from other machines (anyone "
              "with the token can upload videos and run the model)", file=sys.stderr)
    print(f"efficient-sam2 serve: {engine.model_name} ({engine.weights} weights) at {engine.image_size} px, "
          f"uploads in {app.state.store.root}", flush=True)
    shown = f"{url}/?token={settings.token}" if settings.token else f"{url}/"
    print(f"open {shown}  (Ctrl-C to stop)", flush=True)
    try:
        run_server(app, sock, log_level=args.log_level)
    except KeyboardInterrupt:  # uvicorn hands Ctrl-C back once it has shut down
        pass
    print("stopped; uploads removed", flush=True)
    return 0
