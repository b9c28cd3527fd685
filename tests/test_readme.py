"""The README as a front page that stays true: its runnable blocks, its quickstart and its links.

A fenced block right after a `<!-- runnable ... -->` comment is one a reader may copy verbatim. Python blocks must
compile, and the quickstart block must be the code of `examples/quickstart.py` (every statement of the block,
except the settings it writes in as literals and its `print`, appears in the script, compared as syntax trees so
that formatting does not matter). Executing the quickstart here would take minutes, so this test does not: CI runs
`examples/quickstart.py` after the test suite (`.ci/run`). Shell blocks must parse (`bash -n`) and the scripts
they name must exist. Every relative link in the README and in `docs/*.md` must point to an existing file, and a
`#fragment` to a heading of that file.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
QUICKSTART = ROOT / "examples" / "quickstart.py"

_BLOCK = re.compile(r"^<!-- runnable[^\n]*-->\n```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def runnable_blocks(text: str) -> list[tuple[str, str]]:
    """`(language, code)` of every fenced block marked runnable."""
    return [(match.group(1), match.group(2)) for match in _BLOCK.finditer(text)]


def _statements(tree: ast.AST) -> list[ast.stmt]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.stmt) and not isinstance(node, ast.FunctionDef)
    ]


def _is_setting_or_print(statement: ast.stmt) -> bool:
    """A literal written in for the script's command-line options, or a `print` (the script prints more)."""
    if isinstance(statement, ast.Assign):
        values = statement.value.elts if isinstance(statement.value, ast.Tuple) else [statement.value]
        return all(isinstance(value, ast.Constant) for value in values)
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Call)
        and getattr(statement.value.func, "id", None) == "print"
    )


def _heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (lower case, punctuation dropped, spaces to dashes)."""
    anchors, in_code = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_readme_has_a_runnable_python_quickstart_and_shell_commands():
    languages = [language for language, _ in runnable_blocks(README.read_text())]
    assert "python" in languages and "bash" in languages, languages


@pytest.mark.parametrize("index", range(len(runnable_blocks(README.read_text()))))
def test_runnable_blocks_compile(index):
    language, code = runnable_blocks(README.read_text())[index]
    if language == "python":
        compile(code, f"README.md runnable block {index}", "exec")
    elif language == "bash":
        bash = shutil.which("bash")
        assert bash is not None
        subprocess.run([bash, "-n", "-c", code], check=True)
        for script in re.findall(r"(?:bash|python)\s+((?:scripts|examples)/\S+)", code):
            assert (ROOT / script).is_file(), f"README runs {script}, which does not exist"
    else:
        pytest.fail(f"runnable block {index} is {language!r}: mark only python or bash blocks runnable")


def test_readme_quickstart_is_the_code_of_examples_quickstart():
    python_blocks = [code for language, code in runnable_blocks(README.read_text()) if language == "python"]
    assert len(python_blocks) == 1, "the README has one runnable Python block: the quickstart"
    script = {ast.dump(statement) for statement in _statements(ast.parse(QUICKSTART.read_text()))}
    missing = [
        ast.unparse(statement)
        for statement in ast.parse(python_blocks[0]).body
        if not _is_setting_or_print(statement) and ast.dump(statement) not in script
    ]
    assert not missing, f"README quickstart statements that examples/quickstart.py does not run: {missing}"


@pytest.mark.parametrize(
    "page", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda path: str(path.relative_to(ROOT))
)
def test_relative_links_point_to_existing_files_and_headings(page):
    broken = []
    for target in _LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and linked.suffix == ".md" and fragment not in _heading_anchors(linked.read_text()):
            broken.append(f"{target} (no heading #{fragment} in {linked.name})")
    assert not broken, f"{page.relative_to(ROOT)} has broken links: {broken}"
