"""The OpenAI-compatible refining server (`redraft serve`): `create_app()` is the ASGI app."""

from redraft.server.app import create_app, serve

__all__ = ["create_app", "serve"]
