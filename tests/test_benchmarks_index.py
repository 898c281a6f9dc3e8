"""benchmarks/results/ stays an index of current results: every file listed, every listed file there, none large."""

from __future__ import annotations

import pathlib
import re

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results"
INDEX = RESULTS / "README.md"
MAX_BYTES = 100_000  # raw data over this stays out of the tree (benchmarks/_common.py routes it to benchmarks/raw/)


def _listed() -> set[str]:
    """Every file the index's table links to (the first column)."""
    names = set()
    for line in INDEX.read_text().splitlines():
        if line.startswith("| [`"):
            first = line.split(" | ")[0]
            names.update(re.findall(r"\]\(([^)]+)\)", first))
    return names


def test_every_result_file_is_in_the_index():
    present = {p.name for p in RESULTS.iterdir() if p.is_file() and p.name != "README.md"}
    missing = sorted(present - _listed())
    assert not missing, f"benchmarks/results/README.md does not list: {missing}"


def test_every_listed_file_exists():
    gone = sorted(name for name in _listed() if not (RESULTS / name).is_file())
    assert not gone, f"benchmarks/results/README.md lists files that are not there: {gone}"


def test_no_result_file_is_large():
    large = sorted(f"{p.name} ({p.stat().st_size / 1e3:.0f} kB)" for p in RESULTS.iterdir()
                   if p.is_file() and p.stat().st_size > MAX_BYTES)
    assert not large, f"raw data over {MAX_BYTES // 1000} kB belongs out of the tree (benchmarks/raw/): {large}"


def test_every_row_names_a_script_card_and_date():
    for line in INDEX.read_text().splitlines():
        if line.startswith("| [`"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            assert len(cells) == 5, line
            made_by, card, date = cells[1], cells[2], cells[3]
            assert made_by and card and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date), line
            for script in re.findall(r"`(benchmarks/[\w/]+\.py)", made_by):
                assert (RESULTS.parents[1] / script).is_file(), f"{script} (in {line[:60]}...) does not exist"


def test_benchmark_helper_writes_json_and_table(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_common", RESULTS.parent / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    env = common.environment("cpu")
    assert env["card"] and env["date"] and env["torch"] and "conditions" in env  # capture_environment's
    paths = common.write_result(str(tmp_path), "demo", {"environment": env, "rows": [1]}, "| a |")
    assert pathlib.Path(paths["json"]).read_text().startswith("{") and pathlib.Path(paths["md"]).read_text() == "| a |\n"

    class Saved:  # the part of Report the helper uses: to_json for the size, save for the file
        def to_json(self):
            return '{"kind": "x"}'

        def save(self, path):
            pathlib.Path(path).write_text(self.to_json())
            return path

    paths = common.write_result(str(tmp_path), "rep", None, None, report=Saved())
    assert pathlib.Path(paths["json"]).read_text() == '{"kind": "x"}' and "md" not in paths

    raw = tmp_path / "raw"
    common.RESULTS, common.RAW = str(tmp_path), str(raw)  # as if tmp_path were benchmarks/results/
    paths = common.write_result(str(tmp_path), "big", {"x": "y" * (common.RAW_LIMIT_BYTES + 1)}, "| big |")
    assert pathlib.Path(paths["json"]).parent == raw and pathlib.Path(paths["md"]).parent == tmp_path
