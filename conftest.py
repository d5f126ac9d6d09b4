"""pytest setup shared by unit tests and nbval notebook runs."""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collectstart(collector):
    # plotly and widget outputs carry random ids and version-specific templates: never compare them (pitfall N3)
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("application/vnd.plotly.v1+json", "text/html", "stderr",
                                   "application/vnd.jupyter.widget-view+json")


def pytest_collection_modifyitems(items):
    # markers for `make test-fast` (-m "not slow and not notebook and not browser"): every nbval cell is a notebook
    # item; every test of test_browser.py drives a real browser
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.notebook)
        elif item.path.name == "test_browser.py":
            item.add_marker(pytest.mark.browser)
