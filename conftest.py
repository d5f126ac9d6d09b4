"""pytest setup shared by unit tests and nbval notebook runs."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collectstart(collector):
    # plotly and widget outputs carry random ids and version-specific templates: never compare them (pitfall N3)
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("application/vnd.plotly.v1+json", "text/html", "stderr",
                                   "application/vnd.jupyter.widget-view+json")
