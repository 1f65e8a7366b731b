"""`efficient-sam2 serve`: a local web page for clicking and tracking, over an HTTP API.

The package holds no model code: an `Engine` wraps the predictors (`efficient_sam2.predictors`) and the automatic
mask generator (`efficient_sam2.automask`) built once per server; a `VideoSession` is one opened video with its
predictor state and its tracked masks; `SessionStore` bounds how many live side by side and owns the private
folder that uploads go to; `create_app` is the Starlette application (the routes of the HTTP API and the static
page in `static/`, plain HTML, CSS and JavaScript).

    from efficient_sam2.serve import Engine, ServeSettings, create_app
    app = create_app(Engine.build("micro"), ServeSettings(token="secret"))

Needs the optional extra: `pip install "efficient-sam2[serve]"` (Starlette, uvicorn, python-multipart).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Engine": ".engine",
    "ServeSettings": ".settings",
    "SessionStore": ".sessions",
    "VideoSession": ".session",
    "ServeError": ".errors",
    "create_app": ".app",
    "run_server": ".server",
    "ServerThread": ".server",
    "ApiClient": ".client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
