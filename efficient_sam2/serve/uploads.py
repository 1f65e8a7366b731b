"""Uploads: a multipart body streamed to a file in the session's private folder, then recognised by its bytes.

Nothing the client sends becomes a path: the stored file is named by the server (`upload.mp4`, `frames/000000.png`,
...), the kind is read from the file's first bytes (the client's file name and content type are ignored), and a zip
of frames is unpacked member by member into names chosen here, with limits on the count and the unpacked size.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from typing import AsyncIterator

from ..io.frames import IMAGE_EXTENSIONS, sort_frame_names
from .errors import BadRequest, TooLarge

UPLOAD_FIELD = "file"
MAX_ZIP_FRAMES = 20_000
ZIP_EXPANSION = 4  # a zip may unpack to this many times the upload limit
_CHUNK = 1 << 20

KINDS = {"mp4": ".mp4", "mov": ".mov", "avi": ".avi", "webm": ".mkv", "mkv": ".mkv"}  # WebM is Matroska
ACCEPTED = "an mp4, mov, avi or webm video, or a zip of .jpg/.png frames"


def sniff_kind(head: bytes) -> str | None:
    """The container of a file from its first bytes: "zip", "mp4", "mov", "avi", "webm", or None."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    box = head[4:8]
    if box == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if box in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mov"
    return None


async def receive_upload(content_type: str, stream: AsyncIterator[bytes], dest: str, max_bytes: int) -> int:
    """Stream the multipart body's `file` field into `dest`; returns its size in bytes.

    BadRequest when the body is not multipart/form-data or has no `file` field; TooLarge as soon as the body passes
    `max_bytes` (plus a little for the multipart framing).
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadRequest(f"upload the video as multipart/form-data with the field {UPLOAD_FIELD!r}")
    state = {"name": None, "header": b"", "value": b"", "headers": {}, "written": 0, "found": False}
    out = open(dest, "wb")

    def on_part_begin() -> None:
        state["headers"] = {}
        state["name"] = None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["header"].lower()] = state["value"]
        state["header"] = state["value"] = b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["name"] = disp.get(b"name", b"").decode("latin-1")
        if state["name"] == UPLOAD_FIELD:
            if state["found"]:
                raise BadRequest(f"send one {UPLOAD_FIELD!r} field, not several")
            state["found"] = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["name"] == UPLOAD_FIELD:
            state["written"] += end - start
            if state["written"] > max_bytes:
                raise TooLarge(f"the upload is larger than the server's limit of {max_bytes / 2 ** 20:g} MB "
                               "(--max-upload-mb)")
            out.write(data[start:end])

    callbacks = dict(on_part_begin=on_part_begin, on_header_field=on_header_field, on_header_value=on_header_value,
                     on_header_end=on_header_end, on_headers_finished=on_headers_finished,
                     on_part_data=on_part_data)
    parser = MultipartParser(boundary, callbacks)
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > max_bytes + (1 << 16):
                raise TooLarge(f"the upload is larger than the server's limit of {max_bytes / 2 ** 20:g} MB "
                               "(--max-upload-mb)")
            try:
                parser.write(chunk)
            except (BadRequest, TooLarge):
                raise
            except Exception as exc:  # the parser's own errors: a malformed body
                raise BadRequest(f"malformed multipart body: {exc}") from None
        parser.finalize()
    finally:
        out.close()
    if not state["found"]:
        raise BadRequest(f"no {UPLOAD_FIELD!r} field in the upload (send the video as the form field "
                         f"{UPLOAD_FIELD!r})")
    if state["written"] == 0:
        raise BadRequest("the uploaded file is empty")
    return state["written"]


def prepare_video(upload: str, folder: str, max_unpacked: int) -> str:
    """Turn the received file into what `VideoFrames` opens: a video file named by its kind, or a folder of frames
    unpacked from a zip. Removes `upload`; returns the path. BadRequest for anything else."""
    with open(upload, "rb") as f:
        head = f.read(16)
    kind = sniff_kind(head)
    if kind is None:
        os.remove(upload)
        raise BadRequest(f"not a video: expected {ACCEPTED}")
    if kind != "zip":
        path = os.path.join(folder, "video" + KINDS[kind])
        os.replace(upload, path)
        return path
    frames = os.path.join(folder, "frames")
    os.mkdir(frames, 0o700)
    try:
        _unzip_frames(upload, frames, max_unpacked)
    finally:
        os.remove(upload)
    return frames


def _frame_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = []
    for info in zf.infolist():
        if info.is_dir():
            continue
        parts = info.filename.replace("\\", "/").split("/")
        if any((p.startswith(".") and p not in (".", "..")) or p == "__MACOSX" for p in parts):
            continue  # hidden files and macOS resource forks are not frames
        if os.path.splitext(parts[-1])[1].lower() in IMAGE_EXTENSIONS:
            members.append(info)
    return members


def _unzip_frames(path: str, dest: str, max_unpacked: int) -> None:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadRequest(f"not a readable zip file: {exc}") from None
    with zf:
        members = _frame_members(zf)
        if not members:
            raise BadRequest(f"the zip holds no frames (looked for {', '.join(IMAGE_EXTENSIONS)} files)")
        if len(members) > MAX_ZIP_FRAMES:
            raise BadRequest(f"the zip holds {len(members)} frames; at most {MAX_ZIP_FRAMES} are accepted")
        if sum(m.file_size for m in members) > max_unpacked:
            raise TooLarge(f"the zip unpacks to more than {max_unpacked / 2 ** 20:g} MB")
        by_name = {m.filename: m for m in members}
        stems = [os.path.basename(n.replace("\\", "/")) for n in by_name]
        # order by the frame names (by their number where they are numbers), as a folder of frames is read
        names = sort_frame_names(list(by_name)) if len(set(stems)) < len(stems) else None
        if names is None:
            order = sort_frame_names(stems)
            full = {os.path.basename(n.replace("\\", "/")): n for n in by_name}
            names = [full[s] for s in order]
        unpacked = 0
        for k, name in enumerate(names):
            ext = os.path.splitext(name)[1].lower()
            target = os.path.join(dest, f"{k:06d}{'.jpg' if ext == '.jpeg' else ext}")
            try:
                with zf.open(by_name[name]) as src, open(target, "wb") as out:
                    while True:
                        block = src.read(_CHUNK)
                        if not block:
                            break
                        unpacked += len(block)
                        if unpacked > max_unpacked:
                            raise TooLarge(f"the zip unpacks to more than {max_unpacked / 2 ** 20:g} MB")
                        out.write(block)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
                # RuntimeError: encrypted member; NotImplementedError: unsupported compression
                raise BadRequest(f"cannot unpack frame {k} of the zip: {exc}") from None


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
