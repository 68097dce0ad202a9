"""Adaptive critic selection without an LLM call: the embedding router and `redraft route`."""

from redraft.routing.router import Route, Router, get_router

__all__ = ["Route", "Router", "get_router"]
