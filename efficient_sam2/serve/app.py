"""The Starlette application: the page, its static files and the HTTP API (see README "Web app").

Every `/api` route but `GET /api/health` needs the token: `Authorization: Bearer TOKEN`, a `?token=` query, or the
cookie the page sets when it is opened with `?token=`. Errors are answered as `{"error": message}` with 400 (bad
input), 401 (token), 404 (unknown video, frame or object; malformed ids), 413 (upload too large), 503 (every
session busy) or 500 (a failure inside one session, which leaves the server and the other sessions working).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import re
import secrets
from importlib import resources

import numpy as np
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..io.masks import MaskError, decode_rle
from .engine import Engine
from .errors import BadRequest, NotFound, ServeError, TooLarge, Unauthorized
from .export import FORMATS, export
from .session import DIRECTIONS, MAX_OBJ_ID, VideoSession
from .sessions import SessionStore
from .settings import ServeSettings
from .uploads import ZIP_EXPANSION, prepare_video, receive_upload, remove_tree

log = logging.getLogger("efficient_sam2.serve")

MAX_JSON_BYTES = 8 << 20  # a prompt or an RLE mask
DRAIN_BYTES = 64 << 20  # what is read and dropped of an upload found too large while streaming
STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
_FRAME = re.compile(r"(\d{1,9})\.(jpg|png)")
_NO_STORE = {"Cache-Control": "no-store"}
# the page loads nothing from elsewhere, runs no inline script and may not be framed
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def cookie_name(request: Request) -> str:
    """The token cookie of this server (one per port: two servers on one host keep their own)."""
    return f"efficient_sam2_token_{request.url.port or 80}"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_NO_STORE)


def create_app(engine: Engine, settings: ServeSettings | None = None, store: SessionStore | None = None) -> Starlette:
    """The web app over `engine`. The session store (`app.state.store`) owns the private upload folder: call
    `app.state.store.close()` when the server stops (`run_server` and `ServerThread` do)."""
    settings = settings or ServeSettings()
    store = store or SessionStore(engine, settings.max_sessions)
    static = {name: resources.files(__package__).joinpath("static", name).read_bytes() for name in STATIC}
    index_html = resources.files(__package__).joinpath("static", "index.html").read_bytes()
    initial: dict = {}
    if settings.initial_video is not None:
        initial["session"] = store.open(settings.initial_video, None)

    def authorized(request: Request) -> bool:
        if settings.token is None:
            return True
        candidates = [request.query_params.get("token"), request.cookies.get(cookie_name(request))]
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            candidates.append(auth[7:].strip())
        return any(c is not None and secrets.compare_digest(c.encode(), settings.token.encode())
                   for c in candidates)

    def api(auth: bool = True):
        """Wrap an endpoint: check the token, answer ServeErrors as JSON, and any other failure as 500."""

        def wrap(fn):
            @functools.wraps(fn)
            async def endpoint(request: Request):
                try:
                    if auth and not authorized(request):
                        raise Unauthorized("missing or wrong token: open the URL that `efficient-sam2 serve` "
                                           "printed, or send 'Authorization: Bearer TOKEN'")
                    return await fn(request)
                except ServeError as exc:
                    return _error(exc.status, exc.message)
                except Exception as exc:  # a failure inside one session: report it, keep serving
                    log.exception("error in %s %s", request.method, request.url.path)
                    return _error(500, f"internal error: {type(exc).__name__}: {exc}")

            return endpoint

        return wrap

    def session_of(request: Request) -> VideoSession:
        return store.get(request.path_params["video_id"])

    def frame_of(request: Request, session: VideoSession, ext: str) -> int:
        m = _FRAME.fullmatch(request.path_params["frame"])
        if m is None or m.group(2) != ext:
            raise NotFound(f"no such frame; use /frames/N.{ext}")
        t = int(m.group(1))
        if t >= session.num_frames:
            raise NotFound(f"frame {t} is outside the video (frames 0..{session.num_frames - 1})")
        return t

    async def body_json(request: Request) -> dict:
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_JSON_BYTES:
                raise TooLarge(f"the JSON body is larger than {MAX_JSON_BYTES >> 20} MB")
        if not data:
            return {}
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    async def object_request(request: Request) -> tuple[VideoSession, dict, int, int]:
        """(session, body, frame_idx, obj_id) of a request about one object on one frame, checked."""
        session = session_of(request)
        body = await body_json(request)
        return session, body, session.check_frame(_req_int(body, "frame_idx")), _obj_id(body)

    # ------------------------------------------------------------------ page
    async def index(request: Request) -> Response:
        response = Response(index_html, media_type="text/html; charset=utf-8",
                            headers={**_NO_STORE, **_PAGE_HEADERS})
        token = request.query_params.get("token")
        if settings.token is not None and token is not None and authorized(request):
            response.set_cookie(cookie_name(request), token, httponly=True, samesite="strict", path="/")
        return response

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            return _error(404, "no such file")
        return Response(static[name], media_type=STATIC[name],
                        headers={"Cache-Control": "no-cache", **_PAGE_HEADERS})

    # ------------------------------------------------------------------ api
    @api(auth=False)
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @api()
    async def config(request: Request) -> Response:
        session = initial.get("session")
        video = None
        if session is not None and not session.closed and session.video_id in store.ids():
            video = _video_json(session)
        return JSONResponse({**engine.describe(), "efficient_default": settings.efficient_default,
                             "max_upload_mb": settings.max_upload_mb, "max_sessions": settings.max_sessions,
                             "video": video}, headers=_NO_STORE)

    @api()
    async def upload(request: Request) -> Response:
        limit = settings.max_upload_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit + (1 << 16):
            raise TooLarge(f"the upload ({int(length) / 2 ** 20:.1f} MB) is larger than the server's limit of "
                           f"{settings.max_upload_mb:g} MB (--max-upload-mb)")
        folder = store.new_folder()
        stream = request.stream()
        try:
            received = os.path.join(folder, "upload.bin")
            await receive_upload(request.headers.get("content-type", ""), stream, received, limit)
            path = await run_in_threadpool(prepare_video, received, folder, limit * ZIP_EXPANSION)
        except TooLarge:
            remove_tree(folder)
            # read (and drop) what the client still sends, up to a bound, so that it gets the 413 rather than a
            # connection reset
            drained = 0
            async for chunk in stream:
                drained += len(chunk)
                if drained > DRAIN_BYTES:
                    break
            raise
        except BaseException:
            remove_tree(folder)
            raise
        session = await run_in_threadpool(store.open, path, folder)
        return JSONResponse(_video_json(session), status_code=201)

    @api()
    async def video_info(request: Request) -> Response:
        return JSONResponse(session_of(request).info(), headers=_NO_STORE)

    @api()
    async def delete_video(request: Request) -> Response:
        await run_in_threadpool(store.delete, request.path_params["video_id"])
        return Response(status_code=204)

    @api()
    async def frame(request: Request) -> Response:
        session = session_of(request)
        t = frame_of(request, session, "jpg")
        data = await run_in_threadpool(session.frame_jpeg, t)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @api()
    async def mask(request: Request) -> Response:
        session = session_of(request)
        t = frame_of(request, session, "png")
        data = await run_in_threadpool(session.mask_png, t)
        return Response(data, media_type="image/png", headers=_NO_STORE)

    @api()
    async def prompts(request: Request) -> Response:
        session, body, t, obj_id = await object_request(request)
        points = body.get("points")
        labels = body.get("labels")
        pts = lab = None
        if points is not None or labels is not None:
            pts, lab = _points(points), _labels(labels)
            if len(pts) != len(lab):
                raise BadRequest(f"got {len(pts)} points but {len(lab)} labels; give one label per point")
            if len(pts) == 0:
                pts = lab = None
        box = body.get("box")
        if box is not None:
            box = _numbers(box, "box", 4)
        if pts is None and box is None:
            raise BadRequest("give at least one point (points and labels) or a box")
        clear = body.get("clear_old_points", True)
        if not isinstance(clear, bool):
            raise BadRequest(f"clear_old_points must be true or false, got {clear!r}")
        answer = await run_in_threadpool(session.add_prompt, t, obj_id, pts, lab, box, clear)
        return JSONResponse(answer)

    @api()
    async def add_object_mask(request: Request) -> Response:
        session, body, t, obj_id = await object_request(request)
        rle = body.get("mask")
        if not isinstance(rle, dict):
            raise BadRequest('mask must be a COCO RLE object {"size": [H, W], "counts": ...}')
        try:
            m = decode_rle(rle)
        except (MaskError, TypeError, ValueError) as exc:
            raise BadRequest(f"mask: {exc}") from None
        if m.shape != (session.height, session.width):
            raise BadRequest(f"mask is {m.shape[1]}x{m.shape[0]} (WxH) but the video is {session.width}x"
                             f"{session.height}")
        if not m.any():
            raise BadRequest("mask is empty")
        answer = await run_in_threadpool(session.add_mask, t, obj_id, m)
        return JSONResponse(answer)

    @api()
    async def delete_object(request: Request) -> Response:
        session = session_of(request)
        raw = request.path_params["obj_id"]
        if not raw.isdigit() or len(raw) > 9:
            raise NotFound("no such object")
        await run_in_threadpool(session.remove_object, int(raw))
        return Response(status_code=204)

    @api()
    async def propagate(request: Request) -> Response:
        session = session_of(request)
        body = await body_json(request)
        efficient = body.get("efficient", settings.efficient_default)
        if not isinstance(efficient, bool):
            raise BadRequest(f"efficient must be true or false, got {efficient!r}")
        direction = body.get("direction", "forward")
        if direction not in DIRECTIONS:
            raise BadRequest(f"direction must be one of {', '.join(repr(d) for d in DIRECTIONS)}; got {direction!r}")
        start = body.get("start_frame_idx")
        if start is not None:
            start = session.check_frame(_req_int(body, "start_frame_idx"))
        result = await run_in_threadpool(session.propagate, efficient, direction, start)
        return JSONResponse(result.as_dict())

    @api()
    async def cancel(request: Request) -> Response:
        return JSONResponse({"cancelling": session_of(request).cancel()})

    @api()
    async def reset(request: Request) -> Response:
        session = session_of(request)
        await run_in_threadpool(session.reset)
        return Response(status_code=204)

    @api()
    async def automask(request: Request) -> Response:
        session = session_of(request)
        body = await body_json(request)
        t = session.check_frame(_req_int(body, "frame_idx"))
        thresholds = []
        for key in ("pred_iou_thresh", "stability_score_thresh"):
            v = body.get(key)
            if v is not None:
                v = _numbers([v], key, 1)[0]
                if not 0.0 <= v <= 1.0:
                    raise BadRequest(f"{key} must be in [0, 1], got {v}")
            thresholds.append(v)
        answer = await run_in_threadpool(session.automask, t, *thresholds, settings.automask_max)
        return JSONResponse(answer)

    @api()
    async def events(request: Request) -> Response:
        session = session_of(request)

        async def stream():
            version = -1
            idle = 0.0
            yield "retry: 1000\n\n"
            while not session.closed and not store.stopping.is_set():
                if session.progress.version != version:
                    version = session.progress.version
                    yield f"event: progress\ndata: {json.dumps(session.progress.as_dict())}\n\n"
                    idle = 0.0
                elif idle >= 15.0:
                    yield ": keep-alive\n\n"
                    idle = 0.0
                await asyncio.sleep(0.05)
                idle += 0.05
            yield f"event: closed\ndata: {json.dumps({'video_id': session.video_id})}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @api()
    async def export_masks(request: Request) -> Response:
        session = session_of(request)
        fmt = request.query_params.get("format", "zip")
        if fmt not in FORMATS:
            raise BadRequest(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
        folder = store.new_folder()
        try:
            path, name, media = await run_in_threadpool(_locked_export, session, fmt, folder)
        except BaseException:
            remove_tree(folder)
            raise
        return FileResponse(path, media_type=media, filename=name, background=BackgroundTask(remove_tree, folder))

    async def not_found(request: Request, exc: HTTPException) -> Response:
        message = {404: "no such route", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, message)

    vid = "/api/videos/{video_id}"
    routes = [
        Route("/", index, methods=["GET"]),
        Route("/static/{name}", static_file, methods=["GET"]),
        Route("/api/health", health, methods=["GET"]),
        Route("/api/config", config, methods=["GET"]),
        Route("/api/videos", upload, methods=["POST"]),
        Route(vid, video_info, methods=["GET"]),
        Route(vid, delete_video, methods=["DELETE"]),
        Route(vid + "/frames/{frame}", frame, methods=["GET"]),
        Route(vid + "/masks/{frame}", mask, methods=["GET"]),
        Route(vid + "/prompts", prompts, methods=["POST"]),
        Route(vid + "/objects", add_object_mask, methods=["POST"]),
        Route(vid + "/objects/{obj_id}", delete_object, methods=["DELETE"]),
        Route(vid + "/propagate", propagate, methods=["POST"]),
        Route(vid + "/cancel", cancel, methods=["POST"]),
        Route(vid + "/reset", reset, methods=["POST"]),
        Route(vid + "/automask", automask, methods=["POST"]),
        Route(vid + "/events", events, methods=["GET"]),
        Route(vid + "/export", export_masks, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.state.store = store
    app.state.engine = engine
    app.state.settings = settings
    app.state.initial = initial
    return app


def _video_json(session: VideoSession) -> dict:
    return {"video_id": session.video_id, "num_frames": session.num_frames, "width": session.width,
            "height": session.height}


def _locked_export(session: VideoSession, fmt: str, folder: str):
    with session.lock:
        return export(session, fmt, folder)


# ---------------------------------------------------------------------------------------------------------------------
# JSON fields


def _req_int(body: dict, key: str) -> int:
    if key not in body:
        raise BadRequest(f"missing field {key!r}")
    v = body[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadRequest(f"{key} must be an integer, got {v!r}")
    return v


def _obj_id(body: dict) -> int:
    v = _req_int(body, "obj_id")
    if not 1 <= v <= MAX_OBJ_ID:
        raise BadRequest(f"obj_id must be in 1..{MAX_OBJ_ID} (it is the mask's palette index), got {v}")
    return v


def _numbers(values, what: str, n: int | None = None) -> list[float]:
    if not isinstance(values, list) or (n is not None and len(values) != n):
        raise BadRequest(f"{what} must be a list of {n if n is not None else 'some'} numbers, got {values!r:.200}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise BadRequest(f"{what} must hold finite numbers, got {v!r}")
        out.append(float(v))
    return out


def _points(points) -> np.ndarray:
    if not isinstance(points, list):
        raise BadRequest(f"points must be a list of [x, y] pairs, got {points!r:.200}")
    return np.array([_numbers(p, "each point", 2) for p in points], np.float32).reshape(-1, 2)


def _labels(labels) -> np.ndarray:
    if not isinstance(labels, list):
        raise BadRequest(f"labels must be a list of 1 (positive) or 0 (negative), got {labels!r:.200}")
    for v in labels:
        if isinstance(v, bool) or v not in (0, 1):
            raise BadRequest(f"each label must be 1 (positive) or 0 (negative), got {v!r}")
    return np.array(labels, np.int32)
