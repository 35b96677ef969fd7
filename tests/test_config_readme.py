"""The README's configuration table and .streamlit/secrets.toml.example agree with the declarations in
services/config.py: the same variables, and the README shows the same defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from services.config import SETTING_NAMES, SETTINGS, Declaration

ROOT = Path(__file__).resolve().parents[1]
HEADER = ("Variable", "Default", "Meaning")


def _cell_text(inline: Token) -> str:
    # Text as a reader sees it: code spans keep their content, the backticks go.
    return "".join(child.content for child in inline.children or []).strip()


def config_table(markdown: str) -> list[tuple[str, ...]]:
    """The rows of the table whose header is `| Variable | Default | Meaning |`, each a tuple of cell texts."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    tables: list[list[tuple[str, ...]]] = []
    row: list[str] = []
    for token in tokens:
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type == "inline" and tables and token.level > 0:
            row.append(_cell_text(token))
        elif token.type == "tr_close":
            tables[-1].append(tuple(row))
    matching = [t[1:] for t in tables if t and t[0] == HEADER]
    assert len(matching) == 1, f"expected one README table headed {HEADER}, found {len(matching)}"
    return matching[0]


@pytest.fixture(scope="module")
def readme_rows() -> dict[str, tuple[str, ...]]:
    rows = config_table((ROOT / "README.md").read_text(encoding="utf-8"))
    names = [r[0] for r in rows]
    assert len(names) == len(set(names)), "a variable is listed twice in the README"
    return {r[0]: r for r in rows}


def test_the_parser_reads_code_spans_and_plain_text() -> None:
    other_table = "| a |\n|---|\n| b |\n"
    rows = config_table(f"{other_table}\n| Variable | Default | Meaning |\n|---|---|---|\n| `X` | (unset: `y`) | Z |\n")
    assert rows == [("X", "(unset: y)", "Z")]


def test_readme_lists_every_declared_setting_and_no_other(readme_rows: dict[str, tuple[str, ...]]) -> None:
    assert sorted(set(SETTING_NAMES) - set(readme_rows)) == [], "declared but missing from the README"
    assert sorted(set(readme_rows) - set(SETTING_NAMES)) == [], "in the README but not declared"


@pytest.mark.parametrize("declaration", SETTINGS, ids=lambda d: d.name)
def test_readme_shows_the_declared_default(
    declaration: Declaration, readme_rows: dict[str, tuple[str, ...]]
) -> None:
    row = readme_rows.get(declaration.name)
    assert row is not None, f"{declaration.name} is not in the README"
    assert row[1] == declaration.readme_default
    assert row[2], f"{declaration.name} has no meaning in the README"


def test_secrets_example_names_only_declared_settings() -> None:
    example = (ROOT / ".streamlit" / "secrets.toml.example").read_text(encoding="utf-8")
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)\s*=", example, flags=re.MULTILINE)
    assert names, "no settings found in the example: has its format changed?"
    assert sorted(set(names) - set(SETTING_NAMES)) == []
