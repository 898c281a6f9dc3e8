"""What every benchmark shares: the environment it ran in and how its result is written.

    from _common import environment, write_result        # run as `python benchmarks/NAME.py`
    env = environment("cuda:0")                          # capture_environment + the flat keys tables print
    write_result(args.out, f"latency_decode_paths_{card_stem(env)}", {"environment": env, "rows": rows}, table)

The environment is the package's own ``elana_magic.core.environment.capture_environment`` (host, OS,
versions, the host's conditions, the GPU's driver, power limit, clocks and temperature), with the flat
keys the Markdown tables print: ``date`` (UTC), ``card``, ``torch``, ``cuda``, ``transformers``, ``driver``.

A result is a JSON file and a Markdown table of the same name. Where the result is one of the package's
reports, pass it as ``report=``: its JSON is ``Report.save``'s (``load_report`` reads it back). Raw
data over ``RAW_LIMIT_BYTES`` does not go into ``benchmarks/results/`` (kept small and indexed in its
README.md, checked by tests/test_benchmarks_index.py): it goes to ``benchmarks/raw/`` (not tracked).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
RAW = os.path.join(HERE, "raw")
RAW_LIMIT_BYTES = 100_000

if os.path.dirname(HERE) not in sys.path:  # the checkout's package when run as a script
    sys.path.insert(0, os.path.dirname(HERE))


def environment(device: Any = None) -> dict[str, Any]:
    """``capture_environment(device)`` plus date, card, torch, cuda, transformers and driver at top level."""
    from elana_magic.core.environment import capture_environment

    if device is None:
        torch = sys.modules.get("torch")
        device = "cuda:0" if torch is not None and torch.cuda.is_available() else "cpu"
    env = capture_environment(device)
    env["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    env["card"] = env.get("device_name") or str(device)
    for key in ("torch", "cuda", "transformers", "driver"):
        env.setdefault(key, None)
    return env


def card_stem(env: dict[str, Any]) -> str:
    """The card's name as results files carry it ("NVIDIA_H200", "NVIDIA_H100_80GB_HBM3")."""
    return str(env["card"]).replace(" ", "_")


def _is_results(out: str) -> bool:
    return os.path.realpath(out) == os.path.realpath(RESULTS)


def write_result(out: str, name: str, data: dict[str, Any] | None, markdown: str | None, *,
                 report: Any = None) -> dict[str, str]:
    """Write ``name.json`` (``report.save`` where a report is given, else ``data``) and ``name.md`` under ``out``.

    Returns {"json": path, "md": path} for what was written. A JSON over RAW_LIMIT_BYTES headed for
    benchmarks/results/ is written to benchmarks/raw/ instead (the table stays in results/).
    """
    os.makedirs(out, exist_ok=True)
    paths: dict[str, str] = {}
    if report is not None or data is not None:
        text = report.to_json() if report is not None else json.dumps(data, indent=2, default=str)
        json_dir = out
        if _is_results(out) and len(text.encode()) > RAW_LIMIT_BYTES:
            json_dir = RAW
            os.makedirs(RAW, exist_ok=True)
            print(f"{name}.json is {len(text.encode()) / 1e3:.0f} kB: written to {RAW} (raw data stays out of results/)")
        path = os.path.join(json_dir, name + ".json")
        if report is not None:
            report.save(path)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        paths["json"] = path
    if markdown is not None:
        path = os.path.join(out, name + ".md")
        with open(path, "w", encoding="utf-8") as f:
            f.write(markdown if markdown.endswith("\n") else markdown + "\n")
        paths["md"] = path
    return paths
