"""The fast unit layer: redraft's pure logic, tested function by function.

No HTTP server, no model load, no database: each file runs in well under a few seconds, so
this layer is the one to run while changing that logic. Run only this layer with

    pytest tests/unit

or, from anywhere in the suite, `pytest -m unit` (every test here is marked `unit`; the
end-to-end tests beside it are not).
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Hooks of a conftest see every collected item: mark only those under this folder.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.unit)
