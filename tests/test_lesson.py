"""The lesson's exercises: blanks the student fills, checks that hint without giving the answer, solutions kept out."""

from __future__ import annotations

import html
import pathlib
import re
import sys

import pytest

from elana_magic import lesson

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
LESSON = NOTEBOOKS / "03-teaching-efficiency.ipynb"
SOLUTIONS = NOTEBOOKS / "solutions" / "03-teaching-efficiency.py"
BLANK = re.compile(r"^answer_(\d+) = \.\.\.  # your code$")
CHECK = re.compile(r'lesson\.check\("answer_(\d+)"')


def _say(capsys, *args, **kwargs) -> tuple[bool, str]:
    ok = lesson.check(*args, **kwargs)
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # one line, always
    return ok, out.strip()


# ------------------------------------------------------------------------------------------------ check()


def test_blank_asks_for_the_answer(capsys):
    assert _say(capsys, "answer_1", ..., 13.6) == (False, "fill in answer_1 above")


def test_correct_prints_correct(capsys):
    ok, line = _say(capsys, "answer_1", 13.6357, 13.6357, correct=lambda: "13.6 tokens/s")
    assert ok and line == "correct: 13.6 tokens/s"
    assert _say(capsys, "answer_4", 122533, 122533.0, kind="length", correct="yes") == (True, "correct: yes")
    assert _say(capsys, "answer_5", 0.3355, 0.3360, rel_tol=0.02)[0]


@pytest.mark.parametrize("factor, text", [(1e3, "1e3 (too large)"), (1e-3, "1e3 (too small)"), (1e6, "1e6 (too large)")])
def test_units_off(capsys, factor, text):
    ok, line = _say(capsys, "answer_1", 13.6357 * factor, 13.6357)
    assert not ok and "units" in line and text in line


def test_units_off_for_a_length(capsys):
    ok, line = _say(capsys, "answer_4", 122533 * 1000, 122533, kind="length")
    assert not ok and "1e3" in line


def test_inverted_ratio(capsys):
    ok, line = _say(capsys, "answer_3", 1 / 2.9213, 2.9213, kind="ratio")
    assert not ok and "upside down" in line
    # a plain number is not called upside down, even where its inverse is close
    assert "upside down" not in _say(capsys, "answer_5", 1 / 0.3355, 0.3355)[1]


def test_float_length(capsys):
    ok, line = _say(capsys, "answer_4", 122533.0, 122533, kind="length")
    assert not ok and "whole number of tokens" in line
    assert "whole number" in _say(capsys, "answer_4", 122532.7, 122533, kind="length")[1]


def test_negative_length(capsys):
    ok, line = _say(capsys, "answer_4", -5, 122533, kind="length")
    assert not ok and "negative" in line


@pytest.mark.parametrize("answer, side", [(122532, "larger"), (122534, "smaller")])
def test_off_by_one(capsys, answer, side):
    ok, line = _say(capsys, "answer_4", answer, 122533, kind="length")
    assert not ok and "off by one" in line and side in line


def test_too_high_or_low(capsys):
    assert _say(capsys, "answer_2", 20.0, 11.6) == (False, "not yet: answer_2 is too high")
    assert _say(capsys, "answer_2", 5.0, 11.6) == (False, "not yet: answer_2 is too low")


@pytest.mark.parametrize("answer", ["13.6", [13.6], None, float("nan"), float("inf"), True])
def test_not_a_number_never_raises(capsys, answer):
    ok, line = _say(capsys, "answer_1", answer, 13.6)
    assert not ok and line.startswith("answer_1 should be")


def test_numpy_and_torch_scalars(capsys):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    assert _say(capsys, "answer_3", np.float64(2.5), 2.5)[0]
    assert _say(capsys, "answer_4", np.int64(7), 7, kind="length")[0]
    assert _say(capsys, "answer_4", torch.tensor(7), 7, kind="length")[0]
    assert "whole number" in _say(capsys, "answer_4", torch.tensor(7.0), 7, kind="length")[1]
    assert "should be a number" in _say(capsys, "answer_3", np.array([2.5, 1.0]), 2.5)[1]


def test_custom_hints_and_a_failing_message(capsys):
    ok, line = _say(capsys, "answer_1", 13.6 * 1e3, 13.6, hints={"units": "{name}: TPOT is in ms ({factor})"})
    assert not ok and line == "answer_1: TPOT is in ms (a factor of 1e3 (too large))"
    assert _say(capsys, "answer_1", 13.6, 13.6, correct=lambda: 1 / 0) == (True, "correct: (well done)")
    assert _say(capsys, "answer_1", 13.6, "not a float")[1] == "could not check answer_1: ValueError"


EXPECTED = [13.635708, 11.58426, 2.921374, 0.335488, 122533, 0.0039062, 3.948172, 216.0, 28.948187]
MISTAKES = [..., "x", 1.0, -1.0, 0.5, 2.0, 1e3, 1e-3, 1e6, 1e-6]


def _spellings(x: float) -> set[str]:
    """Ways a notebook could print x; the short ones (one or two digits) would match by chance."""
    forms = {repr(x), str(x), f"{x:.1f}", f"{x:.2f}", f"{x:.3f}", f"{x:.4f}", f"{x:.3g}", f"{x:.4g}", f"{x:.5g}",
             f"{x:,.0f}", f"{x:,}", f"{x:e}", f"{x:.2e}", f"{x:.0f}"}
    return {f for f in forms if sum(ch.isdigit() for ch in f) >= 3 and f.strip("0.,e+-") != ""}


@pytest.mark.parametrize("expected, kind", [(x, kind) for x in EXPECTED for kind in ("number", "ratio", "length")
                                             if kind != "length" or x >= 100])  # a length: many tokens
def test_hints_never_show_the_expected_value(capsys, expected, kind):
    target = int(expected) if kind == "length" else expected
    answers = [m if m is ... or isinstance(m, str) else (m * target if m not in (1.0, -1.0) else target + m)
               for m in MISTAKES]
    answers += [1 / target, int(target) + 1, int(target) - 1, float(int(target))]
    for answer in answers:
        ok, line = _say(capsys, "answer_1", answer, target, kind=kind)
        if ok:
            continue
        for form in _spellings(float(target)) | _spellings(target):
            assert form not in line, (answer, line, form)


# ------------------------------------------------------------------------------------------------ helpers


def test_first_length():
    assert lesson.first_length(lambda n: n * 131072 > 16060523008, hi=2**20) == 122533
    assert lesson.first_length(lambda n: True, hi=10) == 1


def test_solution_blocks_cover_every_exercise():
    blocks = lesson.solution_blocks(SOLUTIONS)
    assert sorted(blocks) == [1, 2, 3, 4, 5, 6]
    for n, block in blocks.items():
        assert re.search(rf"^answer_{n} = ", block, re.MULTILINE), block
        compile(block, f"exercise {n}", "exec")


def test_load_solution(monkeypatch, capsys):
    monkeypatch.setattr(lesson, "_ipython", lambda: None)
    lesson.load_solution(4)
    assert capsys.readouterr().out == lesson.solution_blocks(SOLUTIONS)[4]
    lesson.load_solution(9)
    assert "no solution for exercise 9" in capsys.readouterr().out

    class Shell:
        def set_next_input(self, text, replace):
            self.text, self.replace = text, replace

    shell = Shell()
    monkeypatch.setattr(lesson, "_ipython", lambda: shell)
    lesson.load_solution(1)
    assert shell.replace and shell.text.endswith(lesson.solution_blocks(SOLUTIONS)[1])


# ------------------------------------------------------------------------------------------------ the notebook


def _notebook():
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(LESSON, as_version=4)


def _answer_cells(nb) -> dict[int, object]:
    return {int(m.group(1)): c for c in nb.cells if c.cell_type == "code" and (m := BLANK.match(c.source.strip()))}


def _check_cells(nb) -> dict[int, object]:
    return {int(m.group(1)): c for c in nb.cells if c.cell_type == "code" and (m := CHECK.search(c.source))}


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_committed_notebook_has_blanks_and_no_solutions():
    nb = _notebook()
    answers, checks = _answer_cells(nb), _check_cells(nb)
    assert sorted(answers) == sorted(checks) == [1, 2, 3, 4, 5, 6]
    for cell in nb.cells:
        assert "solution" not in cell.metadata.get("tags", []), cell.source
        assert not cell.metadata.get("jupyter", {}).get("source_hidden"), cell.source
        assert "execution" not in cell.metadata
    for n, cell in checks.items():  # the stored outputs are those of the blanks
        assert _stdout(cell).strip() == f"fill in answer_{n} above"
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def _solution_lines() -> list[str]:
    lines = [line.strip() for line in SOLUTIONS.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _rendered_text(nb) -> str:
    nbconvert = pytest.importorskip("nbconvert")
    body, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    return html.unescape(re.sub(r"<[^>]+>", "", body))  # the text a reader sees, without pygments' spans


def test_rendered_html_shows_no_solution():
    nb = _notebook()
    text = _rendered_text(nb)
    lines = _solution_lines()
    assert len(lines) >= 5
    shown = [line for line in lines if line in text]
    assert not shown, shown
    # the detector does find a solution that is there
    _answer_cells(nb)[3].source = lesson.solution_blocks(SOLUTIONS)[3]
    assert any(line in _rendered_text(nb) for line in lines)


def _execute(nb):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME
    from jupyter_client.manager import KernelManager

    class ThisPythonKernelManager(KernelManager):  # the kernel is this interpreter (the venv)
        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]

    client = nbclient.NotebookClient(nb, timeout=600, kernel_name=NATIVE_KERNEL_NAME,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.kernel_manager_class = ThisPythonKernelManager
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{errors[0]['ename']}: {errors[0]['evalue']}"
    return nb


@pytest.mark.slow
def test_lesson_as_committed_asks_for_every_answer():
    nb = _execute(_notebook())
    for n, cell in _check_cells(nb).items():
        assert _stdout(cell).strip() == f"fill in answer_{n} above", _stdout(cell)


@pytest.mark.slow
def test_lesson_with_the_solutions_is_correct():
    nb = _notebook()
    blocks = lesson.solution_blocks(SOLUTIONS)
    for n, cell in _answer_cells(nb).items():
        cell.source = blocks[n]
    nb = _execute(nb)
    for n, cell in _check_cells(nb).items():
        out = _stdout(cell).strip()
        assert out.startswith("correct: ") and "\n" not in out, (n, out)
