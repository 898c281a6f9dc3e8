"""How long the README's main command takes, installs done: `bash scripts/demo.sh` = setup + `elana-magic`.

Times the part after setup (`.venv/bin/elana-magic` when the repository has a .venv, else
`python -m elana_magic` of this interpreter), with the arguments given after `--`, and when each
phase's table appeared. The machine's load is recorded before, during and after, because a busy
machine slows a CPU run: the wall time is only comparable at the same load. The command's CPU time
(user + system) is recorded too: on an idle machine the wall time is about that or less (torch
uses both cores), so it is the better guide on a busy one.

    python benchmarks/demo_time.py                         # the demo as the README runs it
    python benchmarks/demo_time.py --runs 2 -- --size      # other arguments for the command

Writes benchmarks/results/demo_time.json and .md (or --name NAME).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 60.0


def command() -> list[str]:
    venv = ROOT / ".venv" / "bin" / "elana-magic"
    return [str(venv)] if venv.exists() else [sys.executable, "-m", "elana_magic"]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def time_once(argv: list[str]) -> dict:
    """Run the command once: wall time, exit status, when each '== phase:' header appeared, load samples."""
    samples: list[list[float]] = []
    stop = threading.Event()

    def sample_load() -> None:
        while not stop.wait(5.0):
            samples.append(load())

    sampler = threading.Thread(target=sample_load, name="demo-load", daemon=True)
    before = load()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    sampler.start()
    proc = subprocess.Popen(command() + argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    marks, lines = [], []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("== ") or line.startswith("note: no GPU"):
            marks.append({"at_s": round(time.perf_counter() - start, 2), "line": line.strip()[:160]})
    code = proc.wait()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)
    stop.set()
    sampler.join()
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "exit_status": code, "marks": marks, "load_before": before,
            "load_during": samples, "load_after": load(), "output_tail": lines[-12:]}


def environment() -> dict:
    versions = {}
    for name in ("torch", "transformers"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        threads = torch.get_num_threads()
    except ImportError:
        gpu, threads = None, None
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "cpu": cpu_name(), "cores_usable": usable_cores(), "gpu": gpu,
            "torch_threads": threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(), **versions}


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"# The README's main command, timed ({env['date_utc']})", "",
             f"`{' '.join(result['command'])}` (the part of `bash scripts/demo.sh` after setup), run "
             f"{len(result['runs'])} time(s) on {env['cpu']}, {env['cores_usable']} usable cores, "
             f"GPU: {env['gpu'] or 'none'}; torch {env['torch']}, transformers {env['transformers']}, "
             f"Python {env['python']}; torch threads {env['torch_threads']} (OMP_NUM_THREADS="
             f"{env['omp_num_threads'] or 'unset'}).", "",
             f"Target: at most {TARGET_S:.0f} s on a 2-core CPU. Load average (1, 5, 15 min) is shown because "
             "other work on the machine slows a CPU run.", "",
             "| run | wall | CPU time (user+sys) | exit | load before | load after | max 1-min load during |",
             "|---|---|---|---|---|---|---|"]
    for i, run in enumerate(result["runs"], 1):
        peak = max([s[0] for s in run["load_during"]] or [run["load_before"][0]])
        lines.append(f"| {i} | {run['wall_s']:.1f} s | {run['cpu_s']:.1f} s | {run['exit_status']} | {run['load_before']} | "
                     f"{run['load_after']} | {peak} |")
    lines += ["", "When each part's output appeared (first run):", ""]
    lines += [f"- {m['at_s']:.1f} s: `{m['line']}`" for m in result["runs"][0]["marks"]]
    lines += ["", f"Best wall time: **{result['best_wall_s']:.1f} s** "
              f"({'within' if result['best_wall_s'] <= TARGET_S else 'over'} the {TARGET_S:.0f} s target)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--name", default="demo_time", help="results file name (without extension)")
    parser.add_argument("args", nargs="*", help="arguments for elana-magic (after --)")
    opts = parser.parse_args()
    runs = [time_once(opts.args) for _ in range(opts.runs)]
    result = {"command": [Path(c).name if i == 0 else c for i, c in enumerate(command())] + opts.args,
              "environment": environment(), "target_s": TARGET_S, "runs": runs,
              "best_wall_s": min(r["wall_s"] for r in runs)}
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{opts.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{opts.name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if all(r["exit_status"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
