"""Real-browser tests: JupyterLab + Debian's Chromium driven by Playwright, the way learners use the kit.

Each notebook with a dashboard is opened in JupyterLab and run. Right after *Run All*, before any control moves,
every figure is read as plotly.js holds it (titles, axis titles, trace data, the explorer's marker against its
readout) and each dashboard is photographed (the lessons' static pictures); then every dashboard gets a control
moved, and the test reads the rendered readout and figure from the DOM and checks they changed. Screenshots go to
``$EEKIT_SCREENSHOTS`` (default ``build/screenshots``).

They run whenever ``/usr/bin/chromium`` (``apt-get install chromium chromium-driver``; `.ci/run` does it) and the
``playwright`` Python package (in requirements.txt) are there; otherwise they skip and say how to enable them.
``EEKIT_BROWSER_TESTS=0`` skips them on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("EEKIT_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("EEKIT_SCREENSHOTS", ROOT / "build" / "screenshots"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

if os.environ.get("EEKIT_BROWSER_TESTS") == "0":
    pytest.skip("real-browser tests switched off with EEKIT_BROWSER_TESTS=0", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements.txt)")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium chromium-driver` (as .ci/run does) "
                "to run the browser tests", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a free localhost port, no token, serving a *copy* of notebooks/ (runs must not rewrite them)."""
    tmp = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", tmp / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    notebook_settings = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)
    # render every cell (no virtual scrolling), so off-screen dashboards exist in the DOM and can be driven
    (notebook_settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port = _free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), OMP_NUM_THREADS="1")
    jupyter = Path(sys.executable).with_name("jupyter")
    log = open(tmp / "lab.log", "w")
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
         "--ServerApp.token=", "--ServerApp.password=", "--LabApp.expose_app_in_browser=True",
         f"--ServerApp.root_dir={tmp / 'notebooks'}"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not start; log: {(tmp / 'lab.log').read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


OPEN_PAGES: list = []


@pytest.fixture(autouse=True)
def close_pages_after_each_test():
    """A failed test must not leave its notebook's kernel running (and the CPU busy) for the next one."""
    yield
    while OPEN_PAGES:
        close(OPEN_PAGES.pop())


def command(page, name: str) -> None:
    """Start a JupyterLab command without waiting for it: ``execute`` returns a promise that, for run-all, only
    settles when every cell has run; progress is polled separately with timeouts."""
    page.evaluate(f"() => {{ window.jupyterapp.commands.execute('{name}'); }}")


_NOTEBOOK = "window.jupyterapp.shell.currentWidget"
KERNEL_STATUS = f"({_NOTEBOOK}.sessionContext.session && {_NOTEBOOK}.sessionContext.session.kernel ? " \
                f"{_NOTEBOOK}.sessionContext.session.kernel.status : 'none')"
KERNEL_IDLE = f"({KERNEL_STATUS} === 'idle')"
KERNEL_BUSY = f"({KERNEL_STATUS} === 'busy')"
CELL_COUNTS = (f"{_NOTEBOOK}.content.widgets.filter(c => c.model.type === 'code')"
               ".map(c => c.model.executionCount)")


def run_notebook(browser, lab: str, name: str, dashboards: int):
    """Open ``name`` in JupyterLab, run all cells, wait until ``dashboards`` widget areas have rendered plots."""
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.set_default_timeout(90_000)  # no Playwright call may wait forever
    OPEN_PAGES.append(page)
    # ?reset: start from an empty workspace, or JupyterLab reopens the previous test's notebook in a hidden tab
    # (whose sliders and readouts come first in the DOM)
    page.goto(f"{lab}/lab/tree/{name}?reset")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell && "
                           "document.querySelector('.jp-NotebookPanel .jp-Notebook')", timeout=90_000)
    # Wait for the kernel, clear every output (execution counts go blank), then run all. Progress is read from the
    # notebook model, not from "[*]" prompts: a fast notebook can finish between two polls, and a fresh kernel
    # numbers the cells exactly as the committed file does, so a finished run can look like no run at all.
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    command(page, "notebook:clear-all-cell-outputs")
    page.wait_for_function(f"!({CELL_COUNTS}).some(c => c !== null)", timeout=30_000)
    for _attempt in range(6):
        command(page, "notebook:run-all-cells")
        try:  # started: a cell has run, or is running
            page.wait_for_function(f"({CELL_COUNTS}).some(c => c !== null) || {KERNEL_BUSY}", timeout=20_000)
            break
        except playwright_api.TimeoutError:
            continue
    else:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"FAILED-run-all-{name}.png"), full_page=True)
        pytest.fail(f"{name}: 'Run all cells' never started in JupyterLab; state: {lab_state(page)}")
    try:  # finished: every code cell has its execution count and the kernel is idle
        page.wait_for_function(f"({CELL_COUNTS}).every(c => c !== null) && {KERNEL_IDLE}", timeout=500_000)
    except playwright_api.TimeoutError:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"FAILED-{name}.png"), full_page=True)
        pytest.fail(f"{name}: the run did not finish; state: {lab_state(page)}")
    try:
        page.wait_for_function(
            f"document.querySelectorAll('.jp-OutputArea-output .js-plotly-plot').length >= {dashboards}",
            timeout=400_000)
    except playwright_api.TimeoutError:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"FAILED-{name}.png"), full_page=True)
        raise
    time.sleep(2)
    return page


def lab_state(page) -> dict:
    """What JupyterLab says about the current notebook: kernel status, dialogs, prompts (for failure messages)."""
    return page.evaluate("""() => {
        const w = window.jupyterapp.shell.currentWidget;
        const ctx = w && w.sessionContext;
        return {
            widget: w ? w.title.label : null,
            kernel: ctx && ctx.session && ctx.session.kernel ? ctx.session.kernel.status : null,
            kernelDisplayName: ctx ? ctx.kernelDisplayName : null,
            dialogs: Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.innerText.slice(0, 200)),
            prompts: Array.from(document.querySelectorAll('.jp-InputArea-prompt')).slice(0, 5).map(p => p.textContent),
        };
    }""")


def close(page) -> None:
    """Shut the notebook's kernel down (the next notebook gets the CPU) and close the tab (once)."""
    if page.is_closed():
        return
    try:  # fire and forget: page.evaluate has no timeout, and a stuck kernel must not stall the suite
        page.evaluate("() => { window.jupyterapp.serviceManager.sessions.shutdownAll(); }")
        time.sleep(2)
    finally:
        page.close()


def changed_readout(page, index: int, before: str, timeout_s: float = 60) -> str:
    """Wait until readout ``index`` no longer reads ``before`` (the kernel may be slow on a loaded machine) and
    return it; fails with both texts if it never changes."""
    script = f"document.querySelectorAll('.eekit-readout')[{index}].innerText !== {json.dumps(before)}"
    try:
        page.wait_for_function(script, timeout=timeout_s * 1000)
    except playwright_api.TimeoutError:
        pytest.fail(f"readout {index} did not change within {timeout_s} s: {before!r}")
    time.sleep(0.5)  # the plots are redrawn in the same kernel message burst; give the browser a moment
    return readouts(page)[index]


def readouts(page) -> list[str]:
    """Text of every dashboard readout (the HTML widget right under a dashboard's controls)."""
    return page.eval_on_selector_all(".eekit-readout", "els => els.map(e => e.innerText)")


def bar_heights(page, index: int) -> list[str]:
    """Heights of the bars in plot ``index``: the histogram's rendered state."""
    return page.eval_on_selector_all(
        ".jp-OutputArea-output .js-plotly-plot",
        f"plots => Array.from(plots[{index}].querySelectorAll('.bars path')).map(p => p.getAttribute('d'))")


def marker(page, plot_index: int = 0) -> tuple[float, float]:
    """The explorer's current-threshold marker as plotly.js holds it (trace 3 of the accuracy-vs-cost plot)."""
    x, y = page.evaluate(f"() => {{ const g = document.querySelectorAll('.jp-OutputArea-output .js-plotly-plot')"
                         f"[{plot_index}]; return [g.data[3].x[0], g.data[3].y[0]]; }}")
    return float(x), float(y)


def readout_accuracy(text: str) -> float:
    return float(text.split("accuracy")[1].split("%")[0])


FIGURES = """() => Array.from(document.querySelectorAll('.jp-OutputArea-output .js-plotly-plot')).map(g => {
    const L = g._fullLayout, size = v => (v == null ? null : v.length);
    const axes = [...(L._subplots.xaxis || []), ...(L._subplots.yaxis || [])].map(id => {
        const a = L[id.replace(/^x/, 'xaxis').replace(/^y/, 'yaxis')];
        return {id: id, visible: a.visible, title: a.title ? a.title.text : ''};
    });
    return {title: L.title ? L.title.text : '', axes: axes,
            traces: g.data.map(t => ({type: t.type, name: t.name || '', x: size(t.x), y: size(t.y), z: size(t.z)}))};
})"""


def check_first_render(page, name: str) -> list[dict]:
    """Right after Run All, before any control moves: every figure in the lesson as plotly.js holds it has a title
    and titled visible axes, and every trace has data (x and y of one non-zero length, or a non-empty z). An
    energy-timeline trace of an exit no answer reached may be empty. Returns the figures."""
    figures = page.evaluate(FIGURES)
    assert figures, f"{name}: no plotly figure rendered"
    for i, fig in enumerate(figures):
        where = f"{name}, figure {i} ({fig['title']!r})"
        assert fig["title"].strip(), f"{where}: no title"
        for axis in fig["axes"]:
            assert not axis["visible"] or (axis["title"] or "").strip(), f"{where}: axis {axis['id']} has no title"
        assert fig["traces"], f"{where}: no traces"
        for t in fig["traces"]:
            if t["z"] is not None:  # a heat map or an image: its x and y label z's columns and rows
                assert t["z"] > 0, f"{where}: trace {t['name']!r} has an empty z"
                continue
            assert t["x"] == t["y"], f"{where}: trace {t['name']!r} has {t['x']} x and {t['y']} y values"
            if not t["name"].startswith("answer at"):
                assert t["x"], f"{where}: trace {t['name']!r} is empty"
    return figures


def marker_matches_readout(page, readout_index: int = 0) -> None:
    """The first threshold explorer's "current threshold" marker sits at the accuracy its readout prints."""
    y = page.evaluate("""() => { for (const g of document.querySelectorAll('.jp-OutputArea-output .js-plotly-plot'))
        for (const t of g.data) if (t.name === 'current threshold') return t.y[0]; return null; }""")
    assert y is not None, "no 'current threshold' marker"
    assert float(y) == pytest.approx(readout_accuracy(readouts(page)[readout_index]), abs=0.006)


def shoot_dashboards(page, stem: str) -> None:
    """Each dashboard as first drawn: ``<stem>-dashboard-<i>.png``, the lessons' static pictures."""
    areas = page.locator(".jp-OutputArea-output:has(.eekit-readout)")
    for i in range(areas.count()):
        shoot(page, areas.nth(i), f"{stem}-dashboard-{i + 1}.png")


def press_on_slider(page, index: int, key: str, times: int) -> None:
    handle = page.locator(".widget-slider .noUi-handle").nth(index)
    try:
        handle.scroll_into_view_if_needed(timeout=20_000)
    except playwright_api.TimeoutError:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "FAILED-slider.png"), full_page=True)
        sliders = page.eval_on_selector_all(".widget-slider", "els => els.map(e => [e.className, e.offsetParent !== null])")
        pytest.fail(f"slider {index} is not visible; sliders: {sliders}; state: {lab_state(page)}")
    handle.focus()
    for _ in range(times):
        page.keyboard.press(key)
    time.sleep(1.5)


def slide_threshold_and_check_marker(page, presses: int) -> str:
    """Move the first threshold explorer's slider left; its readout must change and its plot marker must sit at
    the accuracy the readout prints. Returns the new readout."""
    before = readouts(page)[0]
    press_on_slider(page, 0, "ArrowLeft", presses)
    after = changed_readout(page, 0, before)
    assert marker(page)[1] == pytest.approx(readout_accuracy(after), abs=0.006)  # the plot shows the readout
    return after


def legend_texts(page) -> list[str]:
    """Every legend entry on the page; an unnamed trace shows up as "trace N"."""
    return page.eval_on_selector_all(".jp-OutputArea-output .js-plotly-plot .legendtext",
                                     "els => els.map(e => e.textContent)")


def shoot(page, locator, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(path))
    return path


def test_threshold_explorer_reacts_in_the_browser(lab, browser):
    page = run_notebook(browser, lab, "00_welcome.ipynb", dashboards=2)
    check_first_render(page, "00_welcome")
    marker_matches_readout(page)
    shoot_dashboards(page, "00_welcome")
    before, plots = readouts(page), page.locator(".jp-OutputArea-output .js-plotly-plot")
    assert before and "accuracy" in before[0] and "saved" in before[0]
    bars_before = bar_heights(page, 1)
    shoot(page, page.locator(".jp-OutputArea-output:has(.eekit-readout)").first, "threshold-explorer.png")
    assert "current threshold" in legend_texts(page)  # as first drawn, before any control moves
    after = [slide_threshold_and_check_marker(page, 80)]  # threshold 0.9 -> 0.5: more samples leave early
    assert bar_heights(page, 1) != bars_before
    assert plots.count() >= 2
    assert "current threshold" in legend_texts(page)
    # the criterion dropdown: entropy rescales and redraws
    page.locator(".widget-dropdown select").first.select_option("entropy")
    changed_readout(page, 0, after[0])
    close(page)


def test_bring_your_own_model_dashboard(lab, browser):
    page = run_notebook(browser, lab, "01_bring_your_own_model.ipynb", dashboards=2)
    check_first_render(page, "01_bring_your_own_model")
    marker_matches_readout(page)
    shoot_dashboards(page, "01_bring_your_own_model")
    slide_threshold_and_check_marker(page, 40)
    shoot(page, page.locator(".jp-OutputArea-output:has(.eekit-readout)").first, "bring-your-own-model.png")
    close(page)


def select_in_dropdown(page, index: int, label: str) -> None:
    page.locator(".widget-dropdown select").nth(index).select_option(label=label)
    time.sleep(2)


def test_exit_gallery_in_lesson_10(lab, browser):
    page = run_notebook(browser, lab, "10_cnn_early_exit.ipynb", dashboards=1)
    check_first_render(page, "10_cnn_early_exit")
    shoot_dashboards(page, "10_cnn_early_exit")
    before = readouts(page)
    assert any("leave at" in r for r in before)
    i = next(i for i, r in enumerate(before) if "leave at" in r)
    select_in_dropdown(page, 0, "block2")  # another exit: other images, another count
    after = changed_readout(page, i, before[i])
    assert "block2" in after
    shoot(page, page.locator(".jp-OutputArea-output:has(.eekit-readout)").nth(i), "exit-gallery.png")
    close(page)


def test_criteria_explorer_in_lesson_11(lab, browser):
    page = run_notebook(browser, lab, "11_thresholds_and_criteria.ipynb", dashboards=2)
    check_first_render(page, "11_thresholds_and_criteria")
    marker_matches_readout(page)
    shoot_dashboards(page, "11_thresholds_and_criteria")
    after = slide_threshold_and_check_marker(page, 60)
    select_in_dropdown(page, 0, "margin")
    changed_readout(page, 0, after)
    close(page)


def test_speech_threshold_explorer_in_lesson_20(lab, browser):
    page = run_notebook(browser, lab, "20_speech_early_exit.ipynb", dashboards=3)
    check_first_render(page, "20_speech_early_exit")
    marker_matches_readout(page)  # the card's threshold ties the full model: the marker must not sit at 0 %
    shoot_dashboards(page, "20_speech_early_exit")
    before = readouts(page)[0]
    assert "layers" in before
    press_on_slider(page, 0, "ArrowRight", 30)  # a looser entropy threshold: earlier exits, fewer layers
    changed_readout(page, 0, before)
    shoot(page, page.locator(".jp-OutputArea-output:has(.eekit-readout)").first, "speech-explorer.png")
    close(page)


def test_noise_explorer_in_lesson_21(lab, browser):
    page = run_notebook(browser, lab, "21_noise_adaptive_exits.ipynb", dashboards=2)
    check_first_render(page, "21_noise_adaptive_exits")
    shoot_dashboards(page, "21_noise_adaptive_exits")
    before = readouts(page)[0]
    assert before.startswith("clean")
    bars_before = bar_heights(page, 0)
    press_on_slider(page, 0, "Home", 1)  # SNR slider to its noisiest setting (0 dB, at the left like the x axis)
    after = changed_readout(page, 0, before, timeout_s=120)
    assert "0 dB" in after
    assert bar_heights(page, 0) != bars_before
    assert page.locator(".jp-OutputArea-output audio").count() >= 1
    assert not [t for t in legend_texts(page) if t.startswith("trace ")]  # every trace keeps its name
    shoot(page, page.locator(".jp-OutputArea-output:has(.eekit-readout)").first, "noise-explorer.png")
    close(page)


def test_energy_dashboard_in_lesson_30(lab, browser):
    page = run_notebook(browser, lab, "30_energy_budgets.ipynb", dashboards=5)
    check_first_render(page, "30_energy_budgets")
    shoot_dashboards(page, "30_energy_budgets")
    before = readouts(page)[0]
    assert "answers" in before and "power failures" in before
    press_on_slider(page, 0, "End", 1)  # capacitor to 100 mF
    after = changed_readout(page, 0, before)
    failures = lambda text: int(text.split("power failures")[1].split("·")[0])
    assert failures(after) < failures(before)
    shoot(page, page.locator(".jp-OutputArea-output:has(.eekit-readout)").first, "energy-dashboard.png")
    close(page)


def test_recipe_grid_in_lesson_23_renders_complete(lab, browser):
    page = run_notebook(browser, lab, "23_pretrained_vs_scratch.ipynb", dashboards=1)
    check_first_render(page, "23_pretrained_vs_scratch")
    assert "layers saved" in readouts(page)[0]  # each trained row's early-exit readout
    shoot_dashboards(page, "23_pretrained_vs_scratch")
    close(page)


def test_sentence_threshold_explorer_in_lesson_24(lab, browser):
    page = run_notebook(browser, lab, "24_digits_to_sentences.ipynb", dashboards=3)
    check_first_render(page, "24_digits_to_sentences")
    marker_matches_readout(page)  # the exit rule's threshold: the marker sits at the readout's 1 - CER
    shoot_dashboards(page, "24_digits_to_sentences")
    before = readouts(page)[0]
    assert "layers" in before
    press_on_slider(page, 0, "ArrowRight", 30)  # a looser entropy threshold: earlier exits, fewer layers
    changed_readout(page, 0, before)
    close(page)


def test_speech_encoder_explorer_in_lesson_02(lab, browser):
    page = run_notebook(browser, lab, "02_bring_your_own_speech_encoder.ipynb", dashboards=2)
    check_first_render(page, "02_bring_your_own_speech_encoder")
    marker_matches_readout(page)
    shoot_dashboards(page, "02_bring_your_own_speech_encoder")
    slide_threshold_and_check_marker(page, 20)
    close(page)


def test_unit_and_signal_explorers_in_lesson_22(lab, browser):
    page = run_notebook(browser, lab, "22_ssl_exits_without_labels.ipynb", dashboards=6)
    check_first_render(page, "22_ssl_exits_without_labels")
    before = readouts(page)
    assert len(before) == 2 and "pretrained" in before[0] and "mean exit layer" in before[1]
    shoot_dashboards(page, "22_ssl_exits_without_labels")
    press_on_slider(page, 0, "Home", 1)  # the unit explorer's SNR slider to 0 dB: exits move deeper
    assert "0 dB" in changed_readout(page, 0, before[0], timeout_s=120)
    page.locator(".eekit-readout").nth(1).scroll_into_view_if_needed()
    page.get_by_role("button", name=PLACEMENT_SILENCE).click()  # the signal explorer's noise switch
    assert "silence_only" in changed_readout(page, 1, before[1])
    close(page)


PLACEMENT_SILENCE = "0 dB noise in the silence only"


def test_fit_explorer_in_lesson_31(lab, browser):
    page = run_notebook(browser, lab, "31_make_it_fit.ipynb", dashboards=3)
    check_first_render(page, "31_make_it_fit")
    before = readouts(page)[0]
    assert before.startswith("step") and "bytes" in before
    shoot_dashboards(page, "31_make_it_fit")
    press_on_slider(page, 0, "Home", 1)  # the smallest target: a later step, or none fits
    assert changed_readout(page, 0, before) != before
    close(page)
