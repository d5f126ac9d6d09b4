"""Every name that the README, docs/ and the lessons import from eekit still imports (code moves keep re-exports).

The import statements are read with ``ast`` from the notebooks' code cells and the Markdown files' python blocks,
then executed one by one, so a moved module or a dropped re-export fails here, not in a learner's kernel.
"""

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sources():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                yield path.name, "".join(cell["source"])
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```python\n(.*?)```", path.read_text(), re.S):
            yield path.name, block


def _imports() -> set[tuple[str, str | None]]:
    """(module, name) for every ``from eekit... import name`` and (module, None) for ``import eekit...``."""
    found = set()
    for _, source in _sources():
        lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:  # a snippet with "..." placeholders: read its import lines alone
            tree = ast.parse("\n".join(ln for ln in lines if ln.startswith(("from eekit", "import eekit"))
                                       and not ln.rstrip().endswith(("(", "\\"))))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "eekit":
                found |= {(node.module, a.name) for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {(a.name, None) for a in node.names if a.name.split(".")[0] == "eekit"}
    return found


IMPORTS = sorted(_imports(), key=lambda mn: (mn[0], mn[1] or ""))


def test_the_lessons_import_from_eekit():
    assert len(IMPORTS) > 50 and ("eekit.zoo", "load_profile") in IMPORTS


@pytest.mark.parametrize("module,name", IMPORTS, ids=[f"{m}:{n}" for m, n in IMPORTS])
def test_public_name_imports(module, name):
    imported = importlib.import_module(module)
    if name is not None:
        assert hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}") is not None, \
            f"from {module} import {name} fails"
