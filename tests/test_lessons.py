"""One lesson index (eekit.lessons) drives the README table, lesson 00's map and every lesson's Next link; this
keeps them equal, and keeps tracker language (a learner has no tracker) out of what learners read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eekit.lessons import LESSONS, lesson, next_link, run_time, table

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks"
TRACKER = re.compile(r"\b(?:issues?\s*#?\d+|the issue'?s?\b|issue's|ticket|tracker)", re.I)


def cells(file: str) -> list[dict]:
    return json.loads((NB / file).read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_the_index_and_the_notebooks_folder_agree():
    assert sorted(p.name for p in NB.glob("[0-9]*.ipynb")) == sorted(x.file for x in LESSONS)
    assert [x.file for x in LESSONS] == sorted(x.file for x in LESSONS)  # course order is file order
    for x in LESSONS:
        assert all(p in {y.file for y in LESSONS} and p < x.file for p in x.prerequisites), x.file
    with pytest.raises(ValueError, match="the lessons are"):
        lesson("99_nope.ipynb")


@pytest.mark.parametrize("x", LESSONS, ids=lambda x: x.stem)
def test_title_time_and_next_link_match_the_index(x):
    nb = cells(x.file)
    assert source(nb[0]).splitlines()[0] == f"# {x.title}"
    time = re.search(r"\*\*Time\*\*: about (\d+) minutes", source(nb[0]))
    assert time and int(time.group(1)) == x.minutes, "the **Time** line at the top and the index disagree"
    for before in x.prerequisites:  # "What you'll need" names them, by file or as "lesson NN"
        assert before in source(nb[0]) or f"lesson {before[:2]}" in source(nb[0]), before
    last = nb[-1]
    assert last["cell_type"] == "markdown", "a lesson ends with a markdown cell holding its Next link"
    assert source(last).rstrip().splitlines()[-1] == next_link(x.file)


def test_next_links_walk_the_whole_course_and_return_home():
    assert next_link(LESSONS[0].file) == f"**Next:** [{LESSONS[1].title}]({LESSONS[1].file})"
    assert next_link(LESSONS[-1].file) == ("**Next:** that is the end of the course; back to "
                                           "[Welcome: meet early-exit networks in five minutes](00_welcome.ipynb)")


def test_readme_and_lesson_00_show_the_index_table():
    assert table("notebooks/") in (ROOT / "README.md").read_text()
    assert any(table() in source(c) for c in cells("00_welcome.ipynb") if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", ["README.md"] + [f"notebooks/{x.file}" for x in LESSONS], ids=str)
def test_no_tracker_language_for_learners(path):
    """Prose, code and printed output a learner sees never point to a tracker they do not have."""
    file = ROOT / path
    if file.suffix == ".ipynb":
        texts = []
        for c in json.loads(file.read_text())["cells"]:
            texts.append(source(c))
            for out in c.get("outputs", []):
                texts.append("".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", "")))
        text = "\n".join(texts)
    else:
        text = file.read_text()
    found = [text[max(0, m.start() - 50):m.end() + 30] for m in TRACKER.finditer(text)]
    assert not found, f"{path}: tracker language: {found}"


@pytest.mark.parametrize("x", LESSONS, ids=lambda x: x.stem)
def test_sections_are_numbered_once_each_in_order(x):
    numbers = [int(m.group(1)) for c in cells(x.file) if c["cell_type"] == "markdown"
               for m in re.finditer(r"(?m)^## (\d+)\.", source(c))]
    assert numbers == list(range(1, len(numbers) + 1)), numbers


def test_the_teaching_guide_covers_every_lesson_with_the_index_times():
    guide = (ROOT / "docs" / "teaching.md").read_text()
    for x in LESSONS:
        heading = f"### {x.stem[:2]}. {x.title}\n"
        assert heading in guide, heading
        entry = guide.split(heading)[1].split("\n### ")[0]
        assert f"about {x.minutes} minutes" in entry and f"*Run All* on one core: {run_time(x)}" in entry


DASHBOARD = re.compile(r"\b\w+(?:Explorer|Gallery|Dashboard|Grid)\(")


@pytest.mark.parametrize("x", LESSONS, ids=lambda x: x.stem)
def test_every_dashboard_has_a_static_picture_that_exists(x):
    """Without a kernel (GitHub, nbviewer, a reopened lesson) a dashboard is a line of text: the markdown cell
    right after it shows the picture the browser tests took of it after Run All."""
    nb = cells(x.file)
    for i, c in enumerate(nb):
        if c["cell_type"] == "code" and DASHBOARD.search(source(c)):
            after = source(nb[i + 1]) if i + 1 < len(nb) else ""
            assert "Static picture of the dashboard above" in after, f"cell {i}: no static picture after it"
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", "\n".join(source(c) for c in nb if c["cell_type"] == "markdown")):
        assert (NB / image).is_file(), f"{x.file} shows {image}, which is not there"


def test_the_readme_stays_a_newcomers_page():
    """At most 1,500 words (code included, as `wc -w` counts): details live in docs/, linked from it."""
    assert len((ROOT / "README.md").read_text().split()) <= 1500


LIVE_FLAG = re.compile(r"^RUN_LIVE = (True|False)\b", re.M)


@pytest.mark.parametrize("x", LESSONS, ids=lambda x: x.stem)
def test_live_training_is_opt_in(x):
    """A training cell either runs fast or reads shipped results by default, with ``RUN_LIVE = False`` beside the
    live run: Run All (and CI) never trains for minutes."""
    flags = [m.group(1) for c in cells(x.file) if c["cell_type"] == "code" for m in LIVE_FLAG.finditer(source(c))]
    assert flags in ([], ["False"]), f"{x.file}: RUN_LIVE flags {flags}; one, set to False, or none"


# the line each lesson's live cell prints when the live run turns out as its prose says
LIVE_RUNS = {"10_cnn_early_exit.ipynb": "final exit between 35% and 55% (chance: 10%): True"}


@pytest.mark.slow  # trains for one to two minutes
@pytest.mark.notebook
@pytest.mark.parametrize("file", sorted(LIVE_RUNS))
def test_the_live_run_turns_out_as_the_prose_says(file):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NB / file, as_version=4)
    live = [c for c in nb.cells if c.cell_type == "code" and LIVE_FLAG.search(c.source)]
    assert len(live) == 1
    live[0].source = LIVE_FLAG.sub("RUN_LIVE = True", live[0].source)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NB)}}).execute()
    printed = "".join(o.get("text", "") for o in live[0].outputs if o.output_type == "stream")
    assert LIVE_RUNS[file] in printed, printed
