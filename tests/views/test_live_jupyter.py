"""The browser check on a running JupyterLab: every report stays visible after its cell finishes.

nbconvert never closes a widget, so the check in test_views_browser.py cannot see what a live frontend
does when a measurement's live view closes. Here JupyterLab 4 runs the quickstart and the lesson cell by
cell, as a user clicks; after each cell that shows a report, the report must be in the page, visible
and not empty. Then the notebook is saved and reopened (a new kernel, none of the old widgets): the
saved reports must still show. Screenshots of each kind go to $ELANA_SCREENSHOT_DIR when set
(docs/views/ is made so).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import pytest

from live_jupyter import (JupyterServer, cell_errors, cell_source, cells, copy_notebooks, expects_report,
                           open_notebook, report_kind, run_cell, run_new_cell, save_notebook, visible_reports)

pytestmark = pytest.mark.slow

NOTEBOOKS = {"01-quickstart.ipynb": {"size", "latency", "energy", "profile", "history", "compare"},
             "03-teaching-efficiency.ipynb": {"latency", "size"}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser):
    require("jupyterlab")
    server = JupyterServer(copy_notebooks(tmp_path_factory.mktemp("live-jupyter"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory, browser):
    require("notebook")
    server = JupyterServer(copy_notebooks(tmp_path_factory.mktemp("live-notebook7")), app="notebook").start()
    yield server
    server.stop()


def require(module: str) -> None:
    """Skip without the server's package, except under .ci/run (ELANA_REQUIRE_BROWSER), where it must run."""
    if importlib.util.find_spec(module) is None:
        if os.environ.get("ELANA_REQUIRE_BROWSER"):
            pytest.fail(f"the live browser check cannot run: {module} is not installed (scripts/setup.sh installs it)")
        pytest.skip(f"{module} is not installed")


def screenshot(rep, kind: str, tmp_path: pathlib.Path) -> None:
    """The report alone, at the page's 1100 px width. A report taller than the window is shot in a window made
    tall enough for it (Lab's notebook scrolls inside the page: a taller element would come out clipped, the
    toolbar drawn over it)."""
    path = tmp_path / f"{kind}.png"
    page, size = rep.page, rep.page.viewport_size
    height = rep.bounding_box()["height"]
    if height + 300 > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": int(height) + 400})
        page.wait_for_timeout(500)
    try:
        rep.scroll_into_view_if_needed()
        rep.screenshot(path=str(path))
    finally:
        page.set_viewport_size(size)
    out = os.environ.get("ELANA_SCREENSHOT_DIR")
    if out:
        pathlib.Path(out).mkdir(parents=True, exist_ok=True)
        (pathlib.Path(out) / path.name).write_bytes(path.read_bytes())


def test_expects_report_reads_the_magic_lines():
    assert expects_report("r = %elana_latency model --prompt-len 32 -o")
    assert expects_report("%%elana_energy --label x\ny = 1")
    assert expects_report("import copy\npruned = f(model)\n%elana_compare original pruned")
    assert not expects_report("%load_ext elana_magic")
    assert not expects_report("%elana_latency model -q -v r")
    assert not expects_report("%elana_history --clear")


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS))
def test_reports_stay_visible_in_jupyterlab(lab, browser, notebook, tmp_path):
    check_reports_stay(lab, browser, notebook, tmp_path)


def test_reports_stay_visible_in_notebook7(notebook7, browser, tmp_path):
    check_reports_stay(notebook7, browser, "01-quickstart.ipynb", tmp_path, screenshots=False)


def check_reports_stay(lab, browser, notebook: str, tmp_path: pathlib.Path, screenshots: bool = True) -> None:
    """Run ``notebook`` cell by cell in the server ``lab``; every report cell shows its report, also reopened."""
    page = open_notebook(browser, lab, notebook)
    missing, kinds, shown_in = [], set(), []
    try:
        for i in range(cells(page).count()):
            run_cell(page, i)
            errors = cell_errors(page, i)
            assert not errors, f"{notebook} cell {i}: {errors[0]}"
            source = cell_source(page, i)
            if not expects_report(source):
                continue
            page.wait_for_timeout(1500)  # the frontend has handled the cell's last messages
            reports = visible_reports(page, i)
            if not reports:
                missing.append(f"cell {i}: {source.strip().splitlines()[-1][:80]}")
                continue
            shown_in.append(i)
            for rep in reports:
                kind = report_kind(rep)
                if screenshots and kind not in kinds and notebook == "01-quickstart.ipynb":
                    screenshot(rep, kind, tmp_path)
                kinds.add(kind)
        assert not missing, f"{notebook}: no visible report after the cell finished: {missing}"
        assert NOTEBOOKS[notebook] <= kinds, f"{notebook}: saw {sorted(kinds)}"
        # still there once every cell has run and the kernel has collected its garbage: a live view's
        # widget closed when Python collects it hides the output it is in, long after that cell's check
        run_new_cell(page, "import gc; gc.collect()")
        page.wait_for_timeout(1500)
        later = [i for i in shown_in if not visible_reports(page, i)]
        assert not later, f"{notebook}: the reports of cells {later} vanished while later cells ran"
        # the same notebook saved and opened again: a new kernel, the old widgets gone
        save_notebook(page)
        page.close()
        page = open_notebook(browser, lab, notebook)
        page.wait_for_timeout(3000)
        gone = [i for i in shown_in if not visible_reports(page, i)]
        assert not gone, f"{notebook} reopened: the reports of cells {gone} are not shown"
    finally:
        page.close()
