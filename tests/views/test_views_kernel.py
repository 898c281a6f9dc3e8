"""What a real kernel (nbclient) shows for each report: one bundle per cell, text + HTML + widget,
and no change to matplotlib's global state."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

WIDGET = "application/vnd.jupyter.widget-view+json"
REPORT_CELLS = {"size": "size", "energy": "energy", "latency": "latency-again", "profile": "profile"}


def _rich(cell) -> list:
    """The cell's rich outputs, less the live view's emptied place (text/plain "" only)."""
    return [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")
            and o.get("data") != {"text/plain": ""}]


def test_no_cell_errors(views_nb):
    errors = [o for c in views_nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{errors[0]['ename']}: {errors[0]['evalue']}"


def test_matplotlib_backend_and_open_figures_unchanged_after_every_cell(views_nb, tagged):
    (state_cell,) = tagged(views_nb, "state")
    text = "".join(o.get("text", "") for o in state_cell.outputs if o.output_type == "stream")
    states = json.loads(text)
    assert len(states) >= 8  # every cell from the setup cell on
    backend, figures = states[0]
    assert figures == []
    assert all(s == [backend, []] for s in states), states


@pytest.mark.parametrize("tag", ["size", "energy", "latency", "latency-again", "profile"])
def test_one_rich_output_per_cell(views_nb, tagged, tag):
    """`-o` as the last line (and `r = ... -o` then `r`) show the report once in the cell."""
    (cell,) = tagged(views_nb, tag)
    rich = _rich(cell)
    assert len(rich) == 1, [o.output_type for o in cell.outputs]
    streams = [o for o in cell.outputs if o.output_type == "stream"]
    assert not streams, streams  # no progress lines, no profiler USDT lines


@pytest.mark.parametrize("kind", sorted(REPORT_CELLS))
def test_every_bundle_has_text_html_and_the_widget(views_nb, tagged, kind):
    (cell,) = tagged(views_nb, REPORT_CELLS[kind])
    data = _rich(cell)[0]["data"]
    assert WIDGET in data and data[WIDGET]["model_id"] in views_nb.metadata["widgets"][
        "application/vnd.jupyter.widget-state+json"]["state"]
    plain = data["text/plain"]
    assert not plain.startswith(("VBox(", "HBox(", "Tab(", "<")), plain[:80]  # the text report, never a widget repr
    html = data["text/html"]
    assert f"elana-{kind}" in html and "<table" in html
    if kind != "energy" or "power over time" in html:  # energy has a plot only where a sensor exists
        assert "<img" in html and "data:image/png;base64," in html


def test_later_cell_shows_the_report_again(views_nb, tagged):
    (first,) = tagged(views_nb, "latency")
    (again,) = tagged(views_nb, "latency-again")
    assert len(_rich(first)) == 1 and len(_rich(again)) == 1
    assert _rich(first)[0]["data"]["text/plain"] == _rich(again)[0]["data"]["text/plain"]


def test_no_live_view_widget_left_in_the_notebook(views_nb):
    """The live view became the report: no progress widget (tqdm or ours) is left as a blank gap."""
    for cell in views_nb.cells:
        for out in cell.get("outputs", []):
            plain = out.get("data", {}).get("text/plain", "")
            assert "running" not in plain[:40] and "it/s" not in plain and "run/s" not in plain


def test_live_view_shows_the_running_phase_then_leaves_the_report_its_own_output(tmp_path, this_python_kernel):
    """In a real kernel, as the ipywidgets 8 protocol carries it to any frontend: the live view's status
    names the phase while %elana_latency runs; then its display slot is updated to plain text *before*
    its widgets are closed, and the report comes as a new display_data whose widgets stay open. A
    frontend that hides an output once its widget closes (JupyterLab, Notebook 7) so hides nothing of
    the report. No elana-live thread is left."""
    km = this_python_kernel(kernel_name="python3")
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        code = ("%load_ext elana_magic\nfrom elana_magic.models import random_model\nm = random_model('tiny-llama')\n"
                "%elana_latency m --prompt-len 16 --gen-len 8 --warmup 1 --repeats 3 --min-time 1.2")
        msgs = _run(kc, code)
        states = [m["content"]["data"].get("state", {}).get("value", "") for m in msgs if m["msg_type"] == "comm_msg"]
        assert any("running:" in v and ("TTFT" in v or "TPOT" in v) for v in states), states[:5]
        # no energy sensor here, so one loop of requests serves all three phases (shared runs)
        assert any("TTFT+TPOT+TTLT" in v for v in states), states[:5]
        kinds = [m["msg_type"] for m in msgs]
        shown = [m for m in msgs if m["msg_type"] == "display_data"]
        assert len(shown) == 2, kinds
        live, report = shown
        assert live["content"]["data"]["text/plain"] == "elana latency: running" and WIDGET in live["content"]["data"]
        live_id = live["content"]["transient"]["display_id"]
        assert "elana-latency" in report["content"]["data"]["text/html"] and WIDGET in report["content"]["data"]
        assert report["content"].get("transient", {}).get("display_id") != live_id
        updates = [i for i, m in enumerate(msgs) if m["msg_type"] == "update_display_data"]
        assert len(updates) == 1 and msgs[updates[0]]["content"]["data"] == {"text/plain": ""}
        closes = [i for i, m in enumerate(msgs) if m["msg_type"] == "comm_close"]
        closed = {msgs[i]["content"]["comm_id"] for i in closes}
        assert live["content"]["data"][WIDGET]["model_id"] in closed  # the live view's widgets are closed...
        assert min(closes) > updates[0]                 # ...only once its slot no longer shows them
        assert msgs.index(report) > max(closes)         # and the report comes after, in its own output
        assert report["content"]["data"][WIDGET]["model_id"] not in closed
        left = _run(kc, "import threading; print([t.name for t in threading.enumerate() if t.name.startswith('elana')])")
        assert any(m["msg_type"] == "stream" and m["content"]["text"].strip() == "[]" for m in left)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _run(kc, code: str, timeout: float = 300) -> list[dict]:
    msg_id = kc.execute(code)
    msgs = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return msgs
        if msg["msg_type"] == "error":
            raise AssertionError("\n".join(msg["content"]["traceback"]))
        msgs.append(msg)
