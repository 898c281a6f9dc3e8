"""The views notebook executed once in a real kernel (nbclient), and what renders it for a browser.

The browser pipeline is offline: nbconvert's HTMLExporter with the widget manager's JavaScript from
the npm registry (installed by scripts/setup.sh into .venv/share/elana-widgets-js), Debian's
chromium driven by Playwright through ``executable_path`` (no browser download).
"""

from __future__ import annotations

import copy
import os
import pathlib
import shutil
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
# The notebook the views are checked on: the project's quickstart (its cells tagged setup, model, size,
# energy, latency, latency-again, profile), between probe cells added here: before it, a hook that records
# matplotlib's backend and open pyplot figures after every cell; after it, the views called directly and
# the recorded states.
VIEWS_NOTEBOOK = HERE.parent.parent / "notebooks" / "01-quickstart.ipynb"
PROBE_BEFORE = """\
import json
import matplotlib
import matplotlib.pyplot as plt

# after every cell: the matplotlib backend and the open pyplot figures (no view may change them)
state_after_cells = []
get_ipython().events.register(
    "post_run_cell", lambda result: state_after_cells.append([matplotlib.get_backend(), plt.get_fignums()]))"""
PROBES_AFTER = {
    "views": """\
for rep in (size_report, energy_report, r, profile_report):
    rep.widget(), rep.to_html(), rep._repr_mimebundle_()
size_report.figure(), r.figure(), profile_report.timeline()
print("views built")""",
    "state": "print(json.dumps(state_after_cells))",
}
KINDS = ("size", "energy", "latency", "profile")
# The first cell of the broken notebook: the size report's widget view comes out empty, so the browser
# check can prove that it notices a broken view (the package has no switch for it).
BREAK_SIZE_VIEW = """\
from elana_magic.core import display as _display
_report_view = _display.report_view


def _broken_view(kind, children):
    box = _report_view(kind, children)
    if kind == "size":
        box.children = ()
    return box


_display.report_view = _broken_view
print("size view emptied")"""


def _this_python_kernel_manager():
    from jupyter_client.manager import KernelManager

    class ThisPythonKernelManager(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]

    return ThisPythonKernelManager


@pytest.fixture(scope="session")
def this_python_kernel():
    """A KernelManager class whose kernel is this interpreter (the venv)."""
    pytest.importorskip("ipykernel")
    return _this_python_kernel_manager()


def execute(nb, workdir: pathlib.Path, timeout: int = 600):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                                     resources={"metadata": {"path": str(workdir)}})
    client.kernel_manager_class = _this_python_kernel_manager()
    client.execute()
    return nb


def views_notebook(nbformat):
    """The quickstart with its outputs cleared, between the probe cells (tagged probe, views, state)."""
    nb = nbformat.read(VIEWS_NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    before = nbformat.v4.new_code_cell(PROBE_BEFORE, metadata={"tags": ["probe"]})
    after = [nbformat.v4.new_code_cell(src, metadata={"tags": [tag]}) for tag, src in PROBES_AFTER.items()]
    nb.cells = [before, *nb.cells, *after]
    return nb


def cells_tagged(nb, tag: str) -> list:
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


@pytest.fixture(scope="session")
def tagged():
    """tagged(nb, tag): the notebook's cells carrying that tag."""
    return cells_tagged


@pytest.fixture(scope="session")
def views_nb(tmp_path_factory):
    """The views notebook, executed top to bottom in a real kernel with its widget state stored."""
    nbformat = pytest.importorskip("nbformat")
    return execute(views_notebook(nbformat), tmp_path_factory.mktemp("views-nb"))


@pytest.fixture(scope="session")
def broken_size_nb(tmp_path_factory):
    """The setup, model and size cells only, after a cell that empties the size view (BREAK_SIZE_VIEW)."""
    nbformat = pytest.importorskip("nbformat")
    nb = views_notebook(nbformat)
    keep = [c for c in nb.cells if set(c.get("metadata", {}).get("tags", [])) & {"probe", "setup", "model", "size"}]
    nb.cells = [nbformat.v4.new_code_cell(BREAK_SIZE_VIEW)] + keep
    return execute(nb, tmp_path_factory.mktemp("broken-nb"))


# -- browser ---------------------------------------------------------------------------------------

def widgets_js_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("ELANA_WIDGETS_JS") or pathlib.Path(sys.prefix, "share", "elana-widgets-js"))


def _require_or_skip(ok: bool, why: str) -> None:
    if not ok:
        if os.environ.get("ELANA_REQUIRE_BROWSER"):
            pytest.fail(f"browser check cannot run: {why} (scripts/setup.sh installs it)")
        pytest.skip(why)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium through Playwright (executable_path: no browser download)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    _require_or_skip(chromium is not None, "no chromium on PATH (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require_or_skip(False, "playwright is not installed (pip install playwright)")
    js = widgets_js_dir() / "node_modules"
    _require_or_skip((js / "@jupyter-widgets/html-manager/dist/embed-amd.js").exists(),
                     f"no @jupyter-widgets/html-manager under {js}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def render_html(nb, path: pathlib.Path, widgets: bool = True) -> pathlib.Path:
    """The notebook as a standalone HTML page. ``widgets``: with its widget state and the local
    widget manager; otherwise as a reader without widget support sees it (no state, no widget JS)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    nb = copy.deepcopy(nb)
    js = widgets_js_dir() / "node_modules"
    exporter.require_js_url = (js / "requirejs/require.js").as_uri()  # the lab template always loads it
    if widgets:
        exporter.widget_renderer_url = (js / "@jupyter-widgets/html-manager/dist/embed-amd.js").as_uri()
    else:
        nb.metadata.pop("widgets", None)
    body, _ = exporter.from_notebook_node(nb)
    # the widget manager and require.js come from local files (MathJax's CDN link, unused here, stays)
    assert "unpkg.com" not in body and "libs/require.js" not in body
    if not widgets:
        assert "embed-amd" not in body
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def render():
    """render(nb, path, widgets=True): the notebook as a standalone HTML file (see render_html)."""
    pytest.importorskip("nbconvert")
    return render_html
