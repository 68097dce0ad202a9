"""The docs stay true: README.md and docs/ match the code — the graph diagram, the generated
configuration page, the testing example, the commands and paths they name, the module map, and
every relative link."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from redraft.cli import build_parser
from redraft.config import RefinerConfig
from redraft.graphs.refine import build_graph
from scripts.config_docs import COMMAND, render

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
README_PATH = ROOT / "README.md"
README = README_PATH.read_text(encoding="utf-8")
ARCHITECTURE = (DOCS / "architecture.md").read_text(encoding="utf-8")
CONFIGURATION = (DOCS / "configuration.md").read_text(encoding="utf-8")
TESTING = (DOCS / "testing.md").read_text(encoding="utf-8")

PAGES = [README_PATH, *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$", re.M)


def test_architecture_diagram_is_the_graph():
    block = re.search(r"```mermaid\n(.*?)```", ARCHITECTURE, re.S)
    assert block is not None
    assert block.group(1) == build_graph().get_graph().draw_mermaid()


def test_docs_document_every_config_field():
    table = CONFIGURATION.split("## `RefinerConfig`", 1)[1]
    for name in RefinerConfig.model_fields:
        assert f"`{name}`" in table, f"docs/configuration.md's table misses {name}"


def test_testing_example_runs():
    example = TESTING.split("## Testing your integration offline", 1)[1]
    code = re.search(r"```python\n(.*?)```", example, re.S).group(1)
    exec(compile(code, "docs/testing.md example", "exec"), {})


def test_readme_is_the_entry_point_not_the_reference():
    size = len(README.encode("utf-8"))
    assert size <= 20_000, f"README.md is {size} bytes (at most 20000): move reference to docs/"


def test_configuration_page_is_generated_from_the_code():
    assert CONFIGURATION == render(), (
        f"docs/configuration.md is out of date with redraft/config.py: run `{COMMAND}`"
    )


def test_readme_test_command_is_what_ci_runs():
    ci_command = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert f"pip install -e '.[dev]' && {ci_command}\n```" in README


# ── links ──────────────────────────────────────────────────────────────────────────────────


def prose(text: str) -> str:
    """The text without code: a link or heading inside code is not one."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    seen: dict[str, int] = {}
    found = set()
    for _, title in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links() -> Iterator[tuple[Path, str]]:
    for page in PAGES:
        for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # not https:, mailto:, ...
                yield page, target


def test_docs_have_links_to_check():
    links = list(relative_links())
    assert any(target.startswith("docs/") for page, target in links if page == README_PATH)
    assert any("#" in target for _, target in links)


@pytest.mark.parametrize(
    ("page", "target"), list(relative_links()), ids=lambda v: v.name if isinstance(v, Path) else v
)
def test_relative_link_resolves(page: Path, target: str):
    where, _, anchor = target.partition("#")
    path = (page.parent / where).resolve() if where else page
    shown = page.relative_to(ROOT)
    assert path.exists(), f"{shown}: the link to {target} names no file"
    if anchor:
        assert path.suffix == ".md", f"{shown}: {target} has an anchor into a non-Markdown file"
        assert anchor in anchors(path), f"{shown}: {target}: {path.name} has no such heading"


# ── commands and paths ─────────────────────────────────────────────────────────────────────


def code_lines(text: str) -> Iterator[str]:
    """Each line of code: inline code spans, and the lines of fenced blocks."""
    for block in FENCE.findall(text):
        yield from block.splitlines()[1:-1]
    for span in INLINE_CODE.findall(FENCE.sub("", text)):
        yield span.strip("`")


def named_commands() -> Iterator[tuple[str, str]]:
    """(page, the words after `redraft`) for each command line a page shows."""
    for page in PAGES:
        for line in code_lines(page.read_text(encoding="utf-8")):
            for match in re.finditer(r"(?:^\s*|[|&;]\s*)redraft[ \t]+([^|&;#\n]+)", line):
                yield str(page.relative_to(ROOT)), match.group(1)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def check_command(words: list[str]) -> str | None:
    """What is wrong with `redraft WORDS` (None: every command and option exists)."""
    parser = build_parser()
    for word in words:
        if word.startswith("-"):
            break
        below = subcommands(parser)
        if not below:
            fixed = [a for a in parser._actions if a.choices and not a.option_strings]
            if fixed and re.fullmatch(r"[a-z][\w-]*", word) and word not in fixed[0].choices:
                return f"{parser.prog} has no {word!r} (choices: {sorted(fixed[0].choices)})"
            break
        if not re.fullmatch(r"[a-z][\w-]*", word):
            return None  # a placeholder (COMMAND): nothing more to check
        if word not in below:
            return f"{parser.prog} has no command {word!r} (it has {sorted(below)})"
        parser = below[word]
    known = set(parser._option_string_actions) | {"--help", "-h"}
    if len(parser._actions) == 0:  # `redraft bench`: its options are python -m benchmarks'
        return None
    for word in words:
        option = word.strip("[](),.`\\").split("=")[0]
        if option.startswith("-") and option not in known:
            return f"{parser.prog} has no option {option}"
    return None


def test_docs_name_commands():
    assert len(list(named_commands())) > 30


@pytest.mark.parametrize(("page", "words"), list(named_commands()))
def test_named_command_exists(page: str, words: str):
    problem = check_command(words.split())
    assert problem is None, f"{page}: `redraft {words.strip()}`: {problem}"


def test_check_command_finds_what_does_not_exist():
    assert check_command(["kb", "search", "x", "--mode", "vector"]) is None
    assert check_command(["route", "train"]) is None
    assert "no command 'reindex'" in check_command(["reindex"])
    assert "no 'retrain'" in check_command(["route", "retrain"])
    assert "no option --fast" in check_command(["serve", "--fast"])
    assert "no command 'purge'" in check_command(["persona", "purge", "U"])


NAMED_PATH = re.compile(
    r"(?<![\w/.])((?:redraft|scripts|tests|benchmarks|personas|playground|examples)/[\w/.-]*)"
)


def test_named_paths_exist():
    missing = []
    for page in PAGES:
        for line in code_lines(page.read_text(encoding="utf-8")):
            for path in NAMED_PATH.findall(line):
                path = path.rstrip(".")
                if not (ROOT / path).exists():
                    missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, "named paths that do not exist:\n" + "\n".join(missing)


def test_module_map_names_every_module():
    block = ARCHITECTURE.split("## Module map", 1)[1]
    block = re.search(r"```\n(.*?)```", block, re.S).group(1)
    named = set(re.findall(r"[\w]+\.py|[\w]+/", block))
    package = ROOT / "redraft"
    missing = [
        str(path.relative_to(ROOT))
        for path in sorted(package.rglob("*.py"))
        if "__pycache__" not in path.parts and path.name != "__init__.py" and path.name not in named
    ]
    missing += [
        f"{path.relative_to(ROOT)}/"
        for path in sorted(package.iterdir())
        if path.is_dir() and path.name != "__pycache__" and f"{path.name}/" not in named
    ]
    assert not missing, "docs/architecture.md's module map does not name: " + ", ".join(missing)
    stale = [name for name in named if name.endswith(".py") and not any(package.rglob(name))]
    assert not stale, f"docs/architecture.md's module map names modules that are gone: {stale}"
