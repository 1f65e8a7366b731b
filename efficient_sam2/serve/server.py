"""Running the app on uvicorn: in the foreground (the command; Ctrl-C stops it cleanly) or in a thread (tests,
benchmarks). The listening socket is bound here, so port 0 picks a free port and the URL printed is the real one."""

from __future__ import annotations

import socket
import threading

from .settings import is_loopback


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one. OSError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = host if host not in ("0.0.0.0", "::") else ("127.0.0.1" if host == "0.0.0.0" else "[::1]")
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _server(app, sock: socket.socket, log_level: str):
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            # stop running jobs at once, so that a propagation does not hold the shutdown up
            app.state.store.stop()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=2,
                            lifespan="off", ws="none")
    return Server(config)


def run_server(app, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve `app` on `sock` until Ctrl-C (or SIGTERM); then close every session and remove the upload folder."""
    server = _server(app, sock, log_level)
    try:
        server.run(sockets=[sock])
    finally:
        app.state.store.close()
        sock.close()


class ServerThread:
    """`with ServerThread(app) as url:` serves `app` on a free loopback port in a daemon thread."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        if not is_loopback(host):
            raise ValueError("ServerThread listens on loopback addresses only")
        self.app = app
        self.sock = bind(host, port)
        self.url = url_of(self.sock, host)
        self.server = _server(app, self.sock, log_level)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="efficient-sam2-serve")

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            if not self.thread.is_alive():
                raise RuntimeError("the server thread stopped during start-up")
            threading.Event().wait(0.01)
        return self.url

    def __exit__(self, *exc) -> None:
        self.app.state.store.stop()
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.app.state.store.close()
        self.sock.close()
