"""The lessons' hidden answers run: every ```python block inside a <details> (exercise solutions, coding-exercise
solutions, "try this" answers) is executed in a fresh kernel right after the cells that precede it, exactly as a
learner who opens the answer and runs it would. Inside a solution the coding-exercise checks run strict
(``eekit.exercises.STRICT``), so a reference solution that no longer matches the library fails instead of printing
"not yet"; the notebook's own check cells, which run the learner's stub, stay lenient.

Each notebook runs once, its solutions interleaved (a few minutes for all of them): marked ``notebook``.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
DETAILS = re.compile(r"<details>.*?</details>", re.S)
PYTHON = re.compile(r"```python\n(.*?)```", re.S)
TRY_THIS = "**Try this:**"


def hidden_code(markdown: str) -> list[str]:
    """The ```python blocks inside the <details> blocks of one markdown cell."""
    return [code for block in DETAILS.findall(markdown) for code in PYTHON.findall(block)]


def test_notebooks_are_found():
    assert len(NOTEBOOKS) >= 8, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_try_this_has_an_answer_and_every_lesson_a_checked_coding_exercise(path):
    cells = nbformat.read(path, as_version=4).cells
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown" and TRY_THIS in cell.source:
            # the answer follows before the next section (the widget and its readout come in between)
            following = []
            for later in cells[i + 1:]:
                if later.cell_type == "markdown" and later.source.startswith("## "):
                    break
                following.append(later)
            answers = [c for c in following if c.cell_type == "markdown" and "<details>" in c.source]
            assert answers, f"{path.name}: the 'try this' in cell {i} has no <details> answer before the next section"
    exercise = [c for c in cells if c.cell_type == "markdown" and "Coding exercise" in c.source]
    assert exercise, f"{path.name}: no 'Coding exercise' section (rebuild a kernel the library hides)"
    checks = [c for c in cells if c.cell_type == "code" and "from eekit.exercises import check_" in c.source]
    solved = [code for c in cells if c.cell_type == "markdown" for code in hidden_code(c.source) if "check_" in code]
    assert solved or not checks, f"{path.name}: the coding exercise has no hidden reference solution running its check"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_hidden_solution_runs_in_its_notebooks_state(path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    run = nbformat.v4.new_notebook(metadata=nb.metadata)
    run.cells.append(nbformat.v4.new_code_cell("import eekit.exercises"))
    solutions = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            run.cells.append(nbformat.v4.new_code_cell(cell.source))
        elif cell.cell_type == "markdown":
            for code in hidden_code(cell.source):
                # strict only inside the solution: the notebook's own check cells run the learner's unfinished stub
                run.cells.append(nbformat.v4.new_code_cell("eekit.exercises.STRICT = True"))
                run.cells.append(nbformat.v4.new_code_cell(f"# hidden solution in cell {i}\n{code}"))
                run.cells.append(nbformat.v4.new_code_cell("eekit.exercises.STRICT = False"))
                solutions += 1
    assert solutions >= 1, f"{path.name}: no hidden solution to run"
    client = NotebookClient(run, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as err:  # the message holds the failing cell's source and traceback
        pytest.fail(f"{path.name}: {err}", pytrace=False)


def test_an_unfinished_exercise_prints_not_yet_and_a_wrong_one_fails_when_strict(capsys, monkeypatch):
    import numpy as np

    from eekit import exercises
    from eekit.zoo import load_profile

    profile = load_profile("cnn-mnist")
    exercises.check_first_exit(lambda scores, t: None, profile)  # the stub a learner starts from: no exception
    assert "not yet" in capsys.readouterr().out
    monkeypatch.setattr(exercises, "STRICT", True)
    with pytest.raises(AssertionError, match="first_exit: at threshold 0.5"):
        exercises.check_first_exit(lambda scores, t: np.zeros(len(scores), int), profile)  # always exit 1: wrong
