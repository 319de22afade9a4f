"""Docs that cannot rot: every ```python block of the README and of docs/*.md runs, in a fresh namespace."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def code_blocks():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text[:match.start()].count("\n") + 1
            yield pytest.param(match.group(1), id=f"{page.relative_to(ROOT)}:{line}")


@pytest.mark.parametrize("code", list(code_blocks()))
def test_code_block_runs(code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    exec(compile(code, "<doc>", "exec"), {"__name__": "__doc__"})


def test_every_page_is_found():
    assert (ROOT / "README.md") in PAGES and len(list(code_blocks())) >= 2
