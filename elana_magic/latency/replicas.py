"""``ngpus=N``: N replicas of the model measured together, one per GPU, through torch.distributed.

As ELANA does (data parallel, one full replica per rank), the global batch is split across the
ranks (it must divide evenly) and every rank measures its micro-batch with ``measure.run_single`` on
its own GPU, energy included. The ranks are started with torchrun (``python -m
torch.distributed.run --standalone --nproc-per-node N -m elana_magic.latency.replicas``): NCCL on
GPUs (rank r on CUDA device r of those ``CUDA_VISIBLE_DEVICES`` makes visible; NVML maps that index to
the physical GPU), gloo processes on a machine without CUDA. The ranks wait for each other before
measuring (ELANA does not) and their results are gathered to rank 0, which writes them for the
caller.

Combining the ranks: the replicas' runs are not lock-stepped (each rank stops on its own rule), so
there is no per-run maximum to take. A global batch is done when its slowest replica is done, so the
combined TTFT/TPOT/TTLT statistics are those of the slowest rank (largest median); the mean of the
ranks' medians (ELANA's figure) is given beside it. Energy is summed over the ranks: J per prefill,
decode step or request of the global batch. CPU replicas share one CPU package, which RAPL cannot
split per process, so they measure no energy (a note says so).

A model object is saved (``save_pretrained``, safetensors) to a temporary folder that every rank
loads; a model path is loaded as is. torchrun and the ranks take their temporary files (torchrun's
``torchelastic_*`` folder) inside it too. The folder and the processes are removed on any error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

import torch

from ..core.errors import ElanaError
from ..core.report import html_table, json_safe, text_table
from ..core.units import format_bytes, format_energy, format_time
from .report import LatencyReport
from .errors import GenerationInputError, GenerationOutOfMemory
from .inputs import check_lengths, model_dtype
from .measure import run_single
from .settings import LatencySettings

STATS = ("ttft_ms", "tpot_ms", "ttlt_ms")
ENERGY_KEYS = ("j_per_prompt", "j_per_token", "j_per_request")
CPU_ENERGY_NOTE = "CPU replicas share one CPU package, which RAPL cannot split per process: no energy"
OTHER_RANK_FAILED = "another rank failed before measuring"
STOP_GRACE_S = 20.0  # torchrun's shutdown of its workers after SIGTERM


class ReplicaError(ElanaError, RuntimeError):
    """A replica failed (one line: the rank and its error); for the command a failed measurement (exit 1)."""

    exit_status = 1


# -- the caller's side ------------------------------------------------------------------------------
def _backend(ngpus: int) -> tuple[str, str]:
    """("nccl", "cuda") when CUDA is usable (and shows ngpus GPUs), else ("gloo", "cpu")."""
    if not torch.cuda.is_available():
        return "gloo", "cpu"
    visible = torch.cuda.device_count()
    if visible < ngpus:
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        shown = f" (CUDA_VISIBLE_DEVICES={env!r})" if env is not None else ""
        raise GenerationInputError(f"--ngpus {ngpus} needs {ngpus} visible GPUs; {visible} visible{shown}")
    return "nccl", "cuda"


def _save(model: torch.nn.Module, tokenizer: Any, folder: str) -> str:
    """The model (and tokenizer) as a folder every rank can load."""
    if not hasattr(model, "save_pretrained"):
        raise GenerationInputError(f"ngpus: a {type(model).__name__} cannot be saved for the replicas: pass a "
                                   "transformers model or a model folder")
    path = os.path.join(folder, "model")
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(path, safe_serialization=True)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(path)
    return path


def _child_env(tmp: str | None = None) -> dict[str, str]:
    """The caller's environment (CUDA_VISIBLE_DEVICES included), with this package first on the path.

    ``tmp``: the temporary folder of torchrun and its ranks (TMPDIR), inside the replicas' folder so that
    torchrun's ``torchelastic_*`` folder goes with it, Ctrl-C included; Inductor keeps the caller's cache."""
    env = dict(os.environ)
    if tmp is not None:
        env.setdefault("TORCHINDUCTOR_CACHE_DIR", _inductor_cache_dir())
        env["TMPDIR"] = tmp
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The ranks only gather a few small objects: NVLink multicast (NVLS) buys nothing, so keep it off.
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    return env  # torchrun sets OMP_NUM_THREADS=1 per worker unless it is set


def _inductor_cache_dir() -> str:
    """Where Inductor caches compiled code for the caller (under the caller's temp folder by default)."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        return default_cache_dir()
    except Exception:  # noqa: BLE001 - a torch without it: the same rule, written out
        import getpass

        user = re.sub(r'[\\/:*?"<>|]', "_", getpass.getuser())
        return os.path.join(tempfile.gettempdir(), f"torchinductor_{user}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to torchrun (it stops its workers), SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait(proc: subprocess.Popen, desc: str, progress: bool) -> int:
    """torchrun's exit status; with ``progress`` True, a line showing the time so far (after 2 s)."""
    if progress is not True:  # False, or a notebook's live view: the ranks report nothing into it
        return proc.wait()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        return proc.wait()
    with tqdm(desc=desc, bar_format="{desc}: {elapsed}", delay=2.0, leave=False) as bar:
        while True:
            try:
                return proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                bar.refresh()


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [x.strip() for x in f if x.strip()]
    except OSError:
        return ""
    errors = [x for x in lines if "Error" in x or "error" in x]
    return (errors or lines or [""])[-1][:300]


def measure_replicas(model: torch.nn.Module | str, settings: LatencySettings, *, tokenizer: Any = None,
                     progress: Any = True) -> "ReplicaLatencyReport":
    """Measure ``settings.ngpus`` replicas of ``model`` (an object or a model folder), the batch split across them.

    Every rank runs ``settings`` on its micro-batch (the options file is the settings' JSON). Bad input raises
    ``GenerationInputError``; a failed rank ``ReplicaError`` (or the rank's own ``GenerationInputError`` /
    ``GenerationOutOfMemory``)."""
    ngpus = settings.ngpus
    backend, device = _backend(ngpus)
    is_path = isinstance(model, (str, os.PathLike))
    if is_path and not os.path.isdir(model):
        raise GenerationInputError(f"ngpus: {model} is not a model folder")
    rank_settings = settings.replace(batch=settings.batch // ngpus, ngpus=1)
    if not is_path:
        if not isinstance(model, torch.nn.Module):
            raise GenerationInputError(f"expected a torch.nn.Module or a model folder, got {type(model).__name__}")
        check_lengths(model, rank_settings.batch, settings.prompt_len, settings.gen_len)
    folder = tempfile.mkdtemp(prefix="elana-replicas-")
    proc = None
    try:
        path = os.fspath(model) if is_path else _save(model, tokenizer, folder)
        spec = {"settings": rank_settings.to_dict(), "device": device, "tokenizer": tokenizer is not None or is_path,
                "dtype": None if is_path else str(model_dtype(model)).replace("torch.", "")}
        with open(os.path.join(folder, "options.json"), "w") as f:
            json.dump(json_safe(spec), f)
        out, log = os.path.join(folder, "result.json"), os.path.join(folder, "torchrun.log")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
               "--nproc-per-node", str(ngpus), "-m", "elana_magic.latency.replicas",
               "--model", path, "--options", os.path.join(folder, "options.json"), "--out", out]
        tmp = os.path.join(folder, "tmp")  # torchrun's torchelastic_* folder goes with ours
        os.makedirs(tmp)
        env = _child_env(tmp)
        with open(log, "w") as log_file:
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)  # Ctrl-C reaches us; we stop it
            rc = _wait(proc, f"elana: {ngpus} replicas ({backend})", progress)
        results = _read(out)
        if results is None:
            raise ReplicaError(f"the {ngpus} replicas exited with status {rc} and no result: {_last_line(log)}")
        _raise_rank_error(results)
        return ReplicaLatencyReport.combine(results, ngpus=ngpus, backend=backend, batch=settings.batch,
                                            label=settings.label)
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


def _read(path: str) -> list[dict] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _raise_rank_error(results: list[dict]) -> None:
    failed = [r for r in results if r.get("error")]
    if not failed:
        return
    causes = [r for r in failed if r["error"]["message"] != OTHER_RANK_FAILED]
    first = (causes or failed)[0]
    kind, message = first["error"]["type"], first["error"]["message"]
    if kind == "GenerationInputError":
        raise GenerationInputError(message)
    if kind == "GenerationOutOfMemory":
        raise GenerationOutOfMemory(f"rank {first['rank']}: {message}")
    raise ReplicaError(f"rank {first['rank']} failed: {kind}: {message}")


# -- the combined report ----------------------------------------------------------------------------
def _slowest(stats: list[dict | None]) -> tuple[dict | None, int | None]:
    present = [(s, i) for i, s in enumerate(stats) if s and s.get("n")]
    if not present:
        return None, None
    return max(present, key=lambda x: x[0]["median"])


class ReplicaLatencyReport(LatencyReport):
    """Per-rank rows (``ranks``) and the combined figures (the LatencyReport keys, for the global batch)."""

    @classmethod
    def combine(cls, results: list[dict], *, ngpus: int, backend: str, batch: int,
                label: str | None) -> "ReplicaLatencyReport":
        reports = [r["report"] for r in sorted(results, key=lambda r: r["rank"])]
        base = dict(reports[0])
        step_ms = base.get("tpot_samples_ms", [])
        micro = batch // ngpus
        ranks = [_rank_row(r, rep) for r, rep in zip(sorted(results, key=lambda r: r["rank"]), reports)]
        data: dict[str, Any] = {**base, "label": label, "batch": batch, "micro_batch": micro, "ngpus": ngpus,
                                "backend": backend, "devices": [row["device"] for row in ranks], "ranks": ranks}
        combined: dict[str, Any] = {"rule": "slowest rank (largest median); ranks are not lock-stepped",
                                    "mean_of_rank_medians_ms": {}}
        for key in STATS:
            stats, rank = _slowest([rep.get(key) for rep in reports])
            data[key] = stats or base.get(key)
            combined[f"{key[:4]}_rank"] = rank
            medians = [rep[key]["median"] for rep in reports if (rep.get(key) or {}).get("n")]
            combined["mean_of_rank_medians_ms"][key[:4]] = sum(medians) / len(medians) if medians else None
            if key == "tpot_ms" and rank is not None:
                step_ms = reports[rank].get("tpot_samples_ms", step_ms)
            if key == "ttlt_ms" and rank is not None:  # the request split of the same (slowest) rank
                data["ttlt_split_ms"] = reports[rank].get("ttlt_split_ms")
                data["tpot_from_ttlt_ms"] = reports[rank].get("tpot_from_ttlt_ms")
        data["combined"] = combined
        data["energy"] = _combined_energy(reports, ranks, batch, data["tpot_ms"], data.get("tpot_from_ttlt_ms"))
        data["peak_memory"] = {row["device"]: row["peak_memory"] for row in ranks if row["peak_memory"]} or None
        notes = list(dict.fromkeys(n for rep in reports for n in rep.get("notes", [])))
        notes.insert(0, f"{ngpus} replicas ({backend}), batch {batch} split {micro} per rank; roofline and engine "
                        "figures are rank 0's, for its micro-batch")
        if backend == "gloo":
            notes.append(CPU_ENERGY_NOTE)
            data["energy"]["reason"] = CPU_ENERGY_NOTE
        data["notes"] = notes
        from ..core.envelope import Envelope

        report = cls.from_dict({**data, "tpot_samples_ms": list(step_ms)})
        report.envelope = Envelope.from_dict(reports[0])  # rank 0's settings, fingerprint and environment
        return report

    def title(self) -> str:
        d = self.data
        label = f"{d['label']} · " if d.get("label") else ""
        where = "GPUs" if d["backend"] == "nccl" else "CPU processes"
        return (f"{label}{d['model']} · {d['ngpus']} replicas on {d['ngpus']} {where} ({d['device_name']}, "
                f"{d['backend']}) · batch {d['batch']} ({d['micro_batch']} per rank) · prompt {d['prompt_len']}"
                f" · gen {d['gen_len']} · {d['engine']} decode")

    def _rank_table(self) -> tuple[list[str], list[list[str]]]:
        header = ["rank", "device", "TTFT", "TPOT", "TTLT", "J/prompt", "J/token", "J/request", "peak memory"]

        def t(stats):
            return format_time(stats["median"] / 1e3, digits=4) if stats and stats.get("median") is not None else "-"

        rows = []
        for row in self.data["ranks"]:
            e = row["energy"]
            peak = (row["peak_memory"] or {}).get("max")
            rows.append([row["rank"], row["device"], t(row["ttft_ms"]), t(row["tpot_ms"]), t(row["ttlt_ms"]),
                         format_energy(e.get("j_per_prompt")), format_energy(e.get("j_per_token")),
                         format_energy(e.get("j_per_request")), format_bytes(peak) if peak else "-"])
        return header, rows

    def _summary_lines(self) -> list[str]:
        c = self.data.get("combined") or {}
        means = c.get("mean_of_rank_medians_ms") or {}
        lines = ["combined = the slowest rank's figures; mean of the ranks' medians (ELANA's): "
                 + ", ".join(f"{k.upper()} {format_time(v / 1e3, digits=4)}" for k, v in means.items() if v is not None)]
        e = self.data.get("energy") or {}
        if e.get("j_per_token") is not None or e.get("j_per_prompt") is not None:
            lines.append("energy: summed over the ranks (J per prefill / decode step / request of the global batch)")
        return lines + super()._summary_lines()

    def _device_lines(self) -> list[str]:
        return []  # the per-rank table says it

    def to_text(self) -> str:
        header, rows = self._rank_table()
        return super().to_text() + "\nper rank (medians):\n" + text_table(header, rows)

    def to_html(self) -> str:
        header, rows = self._rank_table()
        return super().to_html() + html_table(header, rows, caption="per rank (medians)")

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        rows = [{"rank": "combined", **row} for row in super()._dataframe_rows(data)]
        for rank in data["ranks"]:
            for key in STATS:
                stats = rank.get(key) or {}
                if stats.get("n"):
                    rows.append({"rank": rank["rank"], "label": data.get("label"), "phase": key[:4],
                                 "batch": data["micro_batch"], "prompt_len": data["prompt_len"],
                                 "gen_len": data["gen_len"], "engine": rank["engine"],
                                 **{f"{k}_ms" if k != "n" else k: v for k, v in stats.items()}})
        return rows


def _rank_row(result: dict, rep: dict) -> dict[str, Any]:
    energy = rep.get("energy") or {}
    return {"rank": result["rank"], "local_rank": result["local_rank"], "device": result["device"],
            "cuda_visible_devices": result.get("cuda_visible_devices"), "engine": rep.get("engine"),
            **{key: rep.get(key) for key in STATS},
            "energy": {**{k: energy.get(k) for k in ENERGY_KEYS}, "method": energy.get("method"),
                       "reason": energy.get("reason")},
            "peak_memory": (rep.get("peak_memory") or {}).get(result["device"])}


def _total(values: list[Any]) -> float | None:
    return sum(values) if values and all(v is not None for v in values) else None


def _combined_energy(reports: list[dict], ranks: list[dict], batch: int, tpot: dict | None,
                     tpot_from_ttlt_ms: float | None) -> dict[str, Any]:
    energies = [rep.get("energy") or {} for rep in reports]
    out: dict[str, Any] = {k: _total([e.get(k) for e in energies]) for k in ENERGY_KEYS}
    out["per_sequence"] = {k: (out[k] / batch if out[k] is not None else None) for k in ENERGY_KEYS}
    out["net"] = {k: _total([(e.get("net") or {}).get(k) for e in energies]) for k in ENERGY_KEYS}
    tpot_ms = (tpot or {}).get("median") or tpot_from_ttlt_ms
    out["tokens_per_s"] = batch / (tpot_ms / 1e3) if tpot_ms else None
    out["tokens_per_j"] = batch / out["j_per_token"] if out["j_per_token"] else None
    windows = [sum((w.get("energy_j") or 0.0) for w in (e.get("windows") or {}).values()) for e in energies]
    total = sum(windows)
    out["per_device"] = [{"device": row["device"], "rank": row["rank"], **{k: e.get(k) for k in ENERGY_KEYS},
                          "window_j": w, "share": w / total if total > 0 else None}
                         for row, e, w in zip(ranks, energies, windows)]
    out["method"] = energies[0].get("method")
    out["idle_power_w"] = _total([e.get("idle_power_w") for e in energies])
    out["request_split_j"] = out["request_split_counter_j"] = None
    out["windows"] = {}
    reasons = [e.get("reason") for e in energies if e.get("reason")]
    measured = any(out[k] is not None for k in ENERGY_KEYS)
    out["reason"] = None if measured else (reasons[0] if reasons else "no rank measured energy")
    return out


# -- a rank (run by torchrun) -----------------------------------------------------------------------
def _load(path: str, spec: dict, device: torch.device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"dtype": getattr(torch, spec["dtype"])} if spec.get("dtype") else {"dtype": "auto"}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs).to(device).eval()
    tokenizer = None
    if spec.get("tokenizer") and spec["settings"].get("prompt") is not None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception:  # noqa: BLE001 - measure_latency says a prompt needs a tokenizer
            tokenizer = None
    return model, tokenizer


def _error(exc: BaseException) -> dict[str, str]:
    text = str(exc).strip().splitlines()
    return {"type": type(exc).__name__, "message": text[0] if text else ""}


def _measure_rank(path: str, spec: dict, device: torch.device) -> dict:
    settings = LatencySettings.from_dict(spec["settings"])
    if device.type == "cpu":
        settings = settings.replace(energy=False)  # the ranks share one CPU package (see the module doc)
    model, tokenizer = _load(path, spec, device)
    return {"model": model, "tokenizer": tokenizer, "settings": settings}


def main(argv: list[str] | None = None) -> int:
    """One rank: load the model on this rank's device, wait for all ranks, measure, gather to rank 0."""
    import torch.distributed as dist

    parser = argparse.ArgumentParser(prog="elana_magic.latency.replicas")
    parser.add_argument("--model", required=True)
    parser.add_argument("--options", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with open(args.options) as f:
        spec = json.load(f)
    rank, local, world = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    if spec["device"] == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    result: dict[str, Any] = {"rank": rank, "local_rank": local, "device": str(device),
                              "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        job = None
        try:
            job = _measure_rank(args.model, spec, device)
        except Exception as exc:  # noqa: BLE001 - every rank must reach the collectives below
            result["error"] = _error(exc)
        ready = [None] * world
        dist.all_gather_object(ready, "error" not in result)  # the ranks start measuring together
        if job is not None and all(ready):
            try:
                report = run_single(job["model"], job["settings"], tokenizer=job["tokenizer"], progress=False)
                result["report"] = json_safe(report.to_dict())
            except Exception as exc:  # noqa: BLE001
                result["error"] = _error(exc)
        elif job is not None:
            result["error"] = {"type": "ReplicaError", "message": OTHER_RANK_FAILED}
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(result, gathered, dst=0)
        if rank == 0:
            tmp = f"{args.out}.tmp"
            with open(tmp, "w") as f:
                json.dump(gathered, f)
            os.replace(tmp, args.out)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
