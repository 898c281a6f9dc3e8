"""Runs notebooks top to bottom in a kernel of this interpreter, each under a memory limit, and
reports each kernel's peak resident memory: the Binder check (scripts/binder_check.sh) runs it with
the Binder environment's python.

mybinder.org gives a session 2 GB and kills the kernel past it. Here a thread inside the kernel
stands in for that limit: it reads the kernel's resident memory every 10 ms and ends the process
(exit 137, as the OOM killer does) once it passes the limit; the notebook then fails. The peak reported is the largest of
those readings and of the kernel's own high-water mark (VmHWM in /proc/self/status, exact however
short the spike, but reset by each latency measurement's peak-memory probe); a notebook passes when it
ran without an error and that peak stayed under the limit.

    python scripts/run_notebooks.py [--limit-gb 2] [--json FILE] NOTEBOOK...
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

WATCH = """\
import os as _os, threading as _threading, time as _time

def _status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

_binder_peak = [0]

def _binder_memory_watch(limit=%d, marker=%r):
    while True:
        rss = _status("VmRSS:")
        _binder_peak[0] = max(_binder_peak[0], rss, _status("VmHWM:"))
        if rss > limit:
            with open(marker, "w") as f:
                f.write(str(rss))
            _os._exit(137)
        _time.sleep(0.01)

_threading.Thread(target=_binder_memory_watch, name="binder-memory-watch", daemon=True).start()"""
PEAK = 'print("binder-peak-bytes", max(_binder_peak[0], _status("VmHWM:")))'


def run(path: pathlib.Path, limit_bytes: int) -> dict:
    """Run one notebook in a worker process: nbclient waits forever for a kernel that was ended mid-cell,
    so the worker is ended here once the kernel's watch says it passed the limit."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        marker, out = pathlib.Path(tmp, "killed"), pathlib.Path(tmp, "result.json")
        worker = subprocess.Popen([sys.executable, __file__, "--worker", str(marker), "--json", str(out),
                                   "--limit-gb", str(limit_bytes / 1e9), str(path)])
        while worker.poll() is None and not marker.exists():
            time.sleep(0.2)
        if marker.exists():
            time.sleep(2)
            worker.kill()
            worker.wait()
            return {"notebook": path.name, "limit_bytes": limit_bytes, "peak_bytes": int(marker.read_text()),
                    "seconds": None, "error": f"the kernel passed {limit_bytes / 1e9:g} GB and was ended"}
        if worker.returncode != 0 or not out.exists():
            return {"notebook": path.name, "limit_bytes": limit_bytes, "peak_bytes": None, "seconds": None,
                    "error": f"the runner failed (exit {worker.returncode})"}
        return json.loads(out.read_text())


def run_here(path: pathlib.Path, limit_bytes: int, marker: str, timeout_s: int = 900) -> dict:
    """Run one notebook in its own folder; return its name, status, peak bytes and seconds."""
    import nbclient
    import nbformat
    from jupyter_client.manager import KernelManager

    class ThisPython(KernelManager):  # the kernel is this interpreter, whatever kernelspecs the machine has
        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]

    nb = nbformat.read(path, as_version=4)
    nb.cells = [nbformat.v4.new_code_cell(WATCH % (limit_bytes, marker)), *nb.cells, nbformat.v4.new_code_cell(PEAK)]
    client = nbclient.NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.kernel_manager_class = ThisPython
    start = time.monotonic()
    result = {"notebook": path.name, "limit_bytes": limit_bytes, "peak_bytes": None, "error": None}
    try:
        client.execute()
    except nbclient.exceptions.DeadKernelError:
        result["error"] = f"the kernel died (past {limit_bytes / 1e9:.1f} GB, or killed)"
    except nbclient.exceptions.CellExecutionError as exc:
        result["error"] = str(exc).strip().splitlines()[-1][:300]
    result["seconds"] = round(time.monotonic() - start, 1)
    for out in nb.cells[-1].get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith("binder-peak-bytes"):
                result["peak_bytes"] = int(line.split()[1])
    if result["error"] is None and (result["peak_bytes"] is None or result["peak_bytes"] > limit_bytes):
        result["error"] = "no peak read" if result["peak_bytes"] is None else "peak past the limit"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=pathlib.Path)
    parser.add_argument("--limit-gb", type=float, default=2.0, help="memory limit per kernel, GB (default 2)")
    parser.add_argument("--json", type=pathlib.Path, help="write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one notebook, here; the watch writes this file
    args = parser.parse_args(argv)
    limit = int(args.limit_gb * 1e9)
    if args.worker:
        args.json.write_text(json.dumps(run_here(args.notebooks[0].resolve(), limit, args.worker)))
        return 0
    results = []
    for path in args.notebooks:
        res = run(path.resolve(), limit)
        peak = "-" if res["peak_bytes"] is None else f"{res['peak_bytes'] / 1e9:.2f} GB"
        took = "" if res["seconds"] is None else f", {res['seconds']:.0f} s"
        print(f"binder check: {res['notebook']}: peak {peak} of {args.limit_gb:g} GB{took}"
              + (f": FAILED: {res['error']}" if res["error"] else ": ok"), flush=True)
        results.append(res)
    if args.json:
        import platform

        import torch

        args.json.write_text(json.dumps({"python": platform.python_version(), "torch": torch.__version__,
                                         "limit_bytes": limit, "notebooks": results}, indent=1) + "\n")
    return 1 if any(r["error"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
