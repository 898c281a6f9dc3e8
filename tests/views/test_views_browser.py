"""The browser check: the executed views notebook rendered by nbconvert and opened in headless Chromium.

With the widget state and the (local) widget manager, every report kind must render as a widget with
its tables and plots; without them (a reader with no widget support: GitHub, a notebook reopened
without its kernel), the static fallback must still show every report's tables and images.
Screenshots go to the test's folder, and to $ELANA_SCREENSHOT_DIR when set (docs/views/ is made so).
"""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest


pytestmark = pytest.mark.slow

KINDS = ("size", "energy", "latency", "profile")
PLOTS = {"size", "latency", "profile"}  # energy has a plot where a sensor exists


def widget_problems(page, kinds=KINDS) -> list[str]:
    """What is missing from the rendered widget views, by DOM selectors (empty: all rendered)."""
    problems = []
    for kind in kinds:
        views = page.locator(f".jupyter-widgets.elana-report.elana-{kind}")
        if views.count() == 0:
            problems.append(f"{kind}: no widget view")
            continue
        view = views.first
        if view.locator("table.elana-table").count() == 0:
            problems.append(f"{kind}: no table in the widget")
        images = view.locator("img.widget-image")
        if kind in PLOTS and images.count() == 0:
            problems.append(f"{kind}: no plot in the widget")
        for i in range(images.count()):
            if not images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0"):
                problems.append(f"{kind}: plot {i} did not load")
    return problems


def static_problems(page, kinds=KINDS) -> list[str]:
    problems = []
    for kind in kinds:
        blocks = page.locator(f"div.elana-report.elana-{kind}")
        if blocks.count() == 0:
            problems.append(f"{kind}: no static report")
            continue
        block = blocks.first
        if block.locator("table.elana-table").count() == 0:
            problems.append(f"{kind}: no table in the static report")
        images = block.locator("img.elana-plot")
        if kind in PLOTS and images.count() == 0:
            problems.append(f"{kind}: no image in the static report")
        for i in range(images.count()):
            if not images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0"):
                problems.append(f"{kind}: image {i} did not load")
    return problems


def open_page(browser, html: pathlib.Path, widgets: bool):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(html.as_uri(), wait_until="load")
    if widgets:
        try:  # the widget manager renders every view after load
            page.wait_for_selector(".jupyter-widgets.elana-report", timeout=30_000)
            page.wait_for_timeout(1500)
        except Exception:  # noqa: BLE001 - then widget_problems says what is missing
            pass
    return page


def save_screenshots(page, selector: str, tmp_path: pathlib.Path, suffix: str) -> None:
    out = os.environ.get("ELANA_SCREENSHOT_DIR")
    for kind in KINDS:
        loc = page.locator(selector.format(kind=kind))
        if loc.count():
            path = tmp_path / f"{kind}{suffix}.png"
            loc.first.screenshot(path=str(path))
            if out:
                pathlib.Path(out).mkdir(parents=True, exist_ok=True)
                shutil.copy(path, pathlib.Path(out) / path.name)


def test_widgets_render_in_chromium(views_nb, browser, tmp_path, render):
    page = open_page(browser, render(views_nb, tmp_path / "views.html", widgets=True), widgets=True)
    try:
        save_screenshots(page, ".jupyter-widgets.elana-report.elana-{kind}", tmp_path, "")
        assert widget_problems(page) == []
        # the profile's tab titles fit their tabs; the zoom range has its own readout
        tabs = page.locator(".elana-profile .lm-TabBar-tab")
        assert tabs.count() >= 2
        for i in range(tabs.count()):
            assert tabs.nth(i).evaluate("t => { const l = t.querySelector('.lm-TabBar-tabLabel') || t;"
                                        " return l.scrollWidth <= l.clientWidth + 1; }"), tabs.nth(i).inner_text()
        assert page.locator(".elana-profile .elana-range").first.inner_text().endswith("ms")
        # one sans-serif font for summary lines, notes and tables
        fonts = page.locator(".elana-report .widget-html-content > div").evaluate_all(
            "els => els.map(e => getComputedStyle(e).fontFamily)")
        assert fonts and all("sans-serif" in f for f in fonts), set(fonts)
    finally:
        page.close()


def test_static_fallback_without_widget_javascript(views_nb, browser, tmp_path, render):
    page = open_page(browser, render(views_nb, tmp_path / "static.html", widgets=False), widgets=False)
    try:
        save_screenshots(page, "div.elana-report.elana-{kind}", tmp_path, "-static")
        assert page.locator(".jupyter-widgets").count() == 0  # no widget manager ran
        assert static_problems(page) == []
    finally:
        page.close()


def test_a_broken_view_fails_the_check(broken_size_nb, browser, tmp_path, render):
    """A patched report_view empties the size widget: the check must notice."""
    assert "size view emptied" in "".join(o.get("text", "") for o in broken_size_nb.cells[0].outputs)
    page = open_page(browser, render(broken_size_nb, tmp_path / "broken.html", widgets=True), widgets=True)
    try:
        problems = widget_problems(page, kinds=("size",))
        assert problems and all(p.startswith("size:") for p in problems), problems
    finally:
        page.close()
