"""The open videos of one server: random ids, a bound on how many live at once, and the private upload folder.

Every upload gets a folder of its own inside one private temporary folder (mode 0700) made at start; deleting a
session removes its folder, and `close()` (at exit) removes the whole temporary folder. Ids are 128 random bits in
hex; anything else is answered as unknown.
"""

from __future__ import annotations

import re
import secrets
import tempfile
import threading
from collections import OrderedDict

from .engine import Engine
from .errors import Busy, NotFound
from .session import VideoSession
from .uploads import remove_tree

_ID = re.compile(r"[0-9a-f]{32}")


class SessionStore:
    """Sessions by id, least recently used first. `max_sessions`: opening one more evicts the least recently used
    idle session (its files go with it); when all are busy, `Busy`."""

    def __init__(self, engine: Engine, max_sessions: int = 8, root: str | None = None) -> None:
        self.engine = engine
        self.max_sessions = max_sessions
        self.root = tempfile.mkdtemp(prefix="efficient-sam2-serve-", dir=root)  # created with mode 0700
        self._sessions: "OrderedDict[str, VideoSession]" = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0
        self.stopping = threading.Event()  # the server is shutting down: event streams end

    # ------------------------------------------------------------------ folders
    def new_folder(self) -> str:
        """A private folder for one upload, named by the server."""
        return tempfile.mkdtemp(prefix="upload-", dir=self.root)

    # ------------------------------------------------------------------ sessions
    def open(self, path: str, folder: str | None) -> VideoSession:
        """Open a video at `path` (inside `folder`, an upload folder removed with the session; None for a file the
        person named) as a new session."""
        self._make_room()
        video_id = secrets.token_hex(16)
        try:
            session = VideoSession.open(video_id, self.engine, path, folder)
        except BaseException:
            if folder is not None:
                remove_tree(folder)
            raise
        with self._lock:
            self._sessions[video_id] = session
        self._make_room(keep=video_id)  # others may have opened meanwhile
        return session

    def get(self, video_id: str) -> VideoSession:
        if not isinstance(video_id, str) or not _ID.fullmatch(video_id):
            raise NotFound("unknown video id")
        with self._lock:
            session = self._sessions.get(video_id)
            if session is None:
                raise NotFound("unknown video id (it was deleted, or evicted to make room for newer videos)")
            self._sessions.move_to_end(video_id)
        session.touch()
        return session

    def delete(self, video_id: str) -> None:
        session = self.get(video_id)
        with self._lock:
            self._sessions.pop(video_id, None)
        self._release(session)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _make_room(self, keep: str | None = None) -> None:
        while True:
            with self._lock:
                if len(self._sessions) + (0 if keep else 1) <= self.max_sessions:
                    return
                idle = [(s.last_used, vid) for vid, s in self._sessions.items() if vid != keep and not s.busy]
                if not idle:
                    raise Busy(f"all {self.max_sessions} video sessions are busy; try again when one finishes "
                               "(or start the server with a larger --max-sessions)")
                _, victim = min(idle)
                session = self._sessions.pop(victim)
                self.evicted += 1
            self._release(session)

    def _release(self, session: VideoSession) -> None:
        session.close()
        if session.folder is not None:
            remove_tree(session.folder)

    def stop(self) -> None:
        """The server is stopping: every running job stops after its current frame, event streams end."""
        self.stopping.set()
        with self._lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            s.cancel()

    def close(self) -> None:
        """Close every session and remove the temporary folder."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.cancel()
        for s in sessions:
            try:
                self._release(s)
            except Exception:
                pass
        remove_tree(self.root)
