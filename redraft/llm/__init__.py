"""Talking to model endpoints.

`calls` (chat models per role, structured calls, usage), `endpoints` (what each endpoint
supports), `output` (reading model output leniently), `budget` (prompts that fit the context).
"""
