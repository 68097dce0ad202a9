"""The README stays true: its diagram, configuration table and example match the code."""

from __future__ import annotations

import re
from pathlib import Path

from redraft.config import RefinerConfig
from redraft.graphs.refine import build_graph

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_diagram_is_the_graph():
    block = re.search(r"```mermaid\n(.*?)```", README, re.S)
    assert block is not None
    assert block.group(1) == build_graph().get_graph().draw_mermaid()


def test_readme_documents_every_config_field():
    table = README.split("## Configuration", 1)[1]
    for name in RefinerConfig.model_fields:
        assert f"`{name}`" in table, f"README's configuration table misses {name}"


def test_readme_testing_example_runs():
    example = README.split("## Testing your integration offline", 1)[1]
    code = re.search(r"```python\n(.*?)```", example, re.S).group(1)
    exec(compile(code, "README example", "exec"), {})
