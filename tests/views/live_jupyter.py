"""A running JupyterLab (or Notebook 7) driven by Playwright: what a user sees, cell by cell.

The server runs this interpreter's ``jupyter lab`` on a free port of 127.0.0.1, with its own
settings folder (no news popup, every cell kept in the DOM) and a copy of ``notebooks/`` whose
outputs are cleared. Cells are run as a user runs them: click the cell's prompt, press Shift+Enter,
wait for its execution count. Nothing here measures; the notebooks do.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = "elana-live-check"
SETTINGS = {
    # every cell stays in the DOM (the default windowing may detach cells scrolled out of view)
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # no news or update toast over the cells (and no request to the internet for it)
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}
REPORT_MAGIC = re.compile(r"^\s*(?:\w+\s*=\s*)?%%?elana_(size|latency|energy|profile|history|compare)\b(.*)$", re.M)


def expects_report(source: str) -> bool:
    """A cell whose magic shows a report: an %elana_* line without -q (and not --clear / --save)."""
    for match in REPORT_MAGIC.finditer(source):
        options = match.group(2)
        if not re.search(r"(^|\s)(-q|--clear|--save|--load)(\s|$)", options):
            return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_notebooks(dest: pathlib.Path) -> pathlib.Path:
    """notebooks/ (outputs cleared) and benchmarks/results/ (which the lesson reads) under ``dest``."""
    import nbformat

    shutil.copytree(ROOT / "notebooks", dest / "notebooks")
    shutil.copytree(ROOT / "benchmarks" / "results", dest / "benchmarks" / "results")
    for path in (dest / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, path)
    return dest


@dataclass
class JupyterServer:
    root: pathlib.Path
    app: str = "lab"  # "lab" (JupyterLab) or "notebook" (Notebook 7)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    pages: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        """The notebook's page. In JupyterLab, in a workspace of its own: the default workspace would
        restore the tabs an earlier page opened, hidden behind this one, with cells of their own."""
        if self.app != "lab":
            return f"{self.base}/notebooks/notebooks/{notebook}?token={TOKEN}"
        self.pages += 1
        return f"{self.base}/lab/workspaces/check-{self.pages}/tree/notebooks/{notebook}?token={TOKEN}"

    def start(self, timeout: float = 120) -> "JupyterServer":
        settings = self.root / ".settings"
        for name, value in SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        # the kernels import this checkout's elana_magic: the venv's editable install may point at another
        # (a worktree of an old commit checked with this venv would otherwise run the new code)
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "PYTHONPATH": path,
               "JUPYTER_CONFIG_DIR": str(self.root / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(self.root / ".runtime")}
        module = "jupyterlab" if self.app == "lab" else "notebook"
        cmd = [sys.executable, "-m", module, "--no-browser", f"--ServerApp.port={self.port}",
               "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
               f"--ServerApp.root_dir={self.root}", "--ServerApp.port_retries=0", "--allow-root"]
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.root, stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "server.log", "w"))  # noqa: SIM115
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.base}/api/status?token={TOKEN}", timeout=2)
                return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"jupyter {self.app} did not answer in {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


def open_notebook(browser, server: JupyterServer, notebook: str):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(server.url(notebook), wait_until="domcontentloaded")
    import nbformat

    n_cells = len(nbformat.read(server.root / "notebooks" / notebook, as_version=4).cells)
    # every cell rendered (JupyterLab adds them in batches after the page loads)
    page.wait_for_function(f"() => document.querySelectorAll('{CELLS}').length >= {n_cells}",
                           timeout=120_000)
    # the kernel is up once the toolbar's kernel status says idle
    # the kernel is up once the toolbar's kernel status says idle (JupyterLab; Notebook 7's header
    # says "Idle" in its kernel status instead)
    page.wait_for_function(
        "() => { const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
        " if (s) return s.getAttribute('data-status') === 'idle';"
        " const k = document.querySelector('.jp-NotebookKernelStatus, #jp-title .jp-KernelStatus');"
        " return !!k && /idle/i.test(k.textContent); }", timeout=120_000)
    return page


# the cells of the notebook in view (never those of a tab hidden behind it)
CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"


def cells(page):
    return page.locator(CELLS)


_STARTED = "cell => { const p = cell.querySelector('.jp-InputArea-prompt'); return p && /\\[(\\*|\\d+)\\]/.test(p.textContent); }"
_DONE = "cell => { const p = cell.querySelector('.jp-InputArea-prompt'); return p && /\\[\\d+\\]/.test(p.textContent); }"


def run_cell(page, i: int, timeout_s: float = 600, tries: int = 3) -> None:
    """Click cell i's prompt (command mode, cell selected), press Shift+Enter, wait until it is done.

    On a loaded machine the page can miss the click or the key (the cell never starts: its prompt stays
    "[ ]"); then the user's gesture is made again, as a user would, up to ``tries`` times."""
    cell = cells(page).nth(i)
    code = "jp-CodeCell" in (cell.get_attribute("class") or "")
    for attempt in range(tries):
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputPrompt").first.click()
        page.keyboard.press("Shift+Enter")
        if not code:
            return
        try:
            page.wait_for_function(_STARTED, arg=cell.element_handle(), timeout=60_000)
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: the gesture did not reach the cell
            if attempt == tries - 1:
                raise
    page.wait_for_function(_DONE, arg=cell.element_handle(), timeout=timeout_s * 1000)


def run_new_cell(page, code: str, timeout_s: float = 120) -> None:
    """Add a code cell below the last one, as a user does (select it, press b, type), and run it."""
    n = cells(page).count()
    last = cells(page).nth(n - 1)
    last.scroll_into_view_if_needed()
    last.locator(".jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.wait_for_function(f"() => document.querySelectorAll('{CELLS}').length > {n}", timeout=30_000)
    cell = cells(page).nth(n)
    cell.locator(".jp-InputArea-editor").first.click()
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        "cell => { const p = cell.querySelector('.jp-InputArea-prompt'); return p && /\\[\\d+\\]/.test(p.textContent); }",
        arg=cell.element_handle(), timeout=timeout_s * 1000)


def cell_source(page, i: int) -> str:
    return cells(page).nth(i).locator(".jp-InputArea-editor").inner_text()


def visible_reports(page, i: int) -> list:
    """The reports in cell i's outputs that a user sees: visible, taller than a line, with text."""
    seen = []
    reports = cells(page).nth(i).locator(".jp-OutputArea-output .elana-report")
    for k in range(reports.count()):
        rep = reports.nth(k)
        box = rep.bounding_box()
        if rep.is_visible() and box and box["height"] > 30 and rep.inner_text().strip():
            seen.append(rep)
    return seen


def report_kind(rep) -> str:
    classes = (rep.get_attribute("class") or "").split()
    kinds = [c[len("elana-"):] for c in classes if c.startswith("elana-") and c != "elana-report"]
    return kinds[0] if kinds else "report"


def cell_errors(page, i: int) -> list[str]:
    errs = cells(page).nth(i).locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    return [errs.nth(k).inner_text()[:300] for k in range(errs.count()) if "Traceback" in errs.nth(k).inner_text()
            or "Error" in errs.nth(k).inner_text()[:200]]


def save_notebook(page) -> None:
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1000)
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
