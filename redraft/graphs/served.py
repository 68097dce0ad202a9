"""The graph `langgraph.json` serves: models from the environment, threads by the server.

Its own module so that it is built when LangGraph Server loads it, not whenever `redraft` is
imported. Its clients are not trusted with the whole config: their run context is `RunSettings`,
which cannot redirect provider keys, storage or files.
"""

from redraft.config import RefinerConfig, RunSettings
from redraft.graphs.refine import build_graph

graph = build_graph(RefinerConfig(), context_schema=RunSettings)
