"""Talking to model endpoints.

`calls` (chat models per role, structured calls), `direct` (the provider path without
LangChain for models built by name), `usage` (calls and tokens per agent), `endpoints` (what
each endpoint supports), `output` (reading model output leniently), `budget` (prompts that fit
the context).
"""
