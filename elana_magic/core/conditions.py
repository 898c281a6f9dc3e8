"""What a timing rests on besides the model: the host's load over the run and the CPU threads used.

Recorded in every report's ``environment["conditions"]`` (JSON values, a few reads of /proc):

* ``cores``: the cores this process may run on (``os.sched_getaffinity``);
* ``torch_threads``: torch's intra-op CPU threads when the measurement started; ``threads``: how they
  were chosen (``core.threads``), where they were;
* ``start`` / ``end``: ``loadavg`` (1, 5, 15 min), ``busy_cpu_s`` (busy CPU seconds of every process on
  those cores, from /proc/stat), ``own_cpu_s`` (this process's CPU seconds), ``run_s`` / ``wait_s`` (the
  seconds this process's threads ran and waited runnable for a core, /proc/self/task/*/schedstat),
  ``time_s`` (perf_counter);
* over the run (where it has an end): ``window_s``, ``other_busy_cores`` (the cores other processes kept
  busy: busy CPU time minus ours, over the window), ``own_busy_cores``, ``cores_free`` and
  ``cpu_wait_ratio`` (seconds our threads waited for a core per second they ran: a single-threaded
  timing is about ``1 + cpu_wait_ratio`` times what a free core gives; unlike busy cores it keeps
  growing when more work than cores is queued).

``differences`` names the conditions in which two reports measured apart differ enough to move a
timing (``LOAD_TOLERANCE_CORES`` busy cores, waits for a core that slow a run by ``WAIT_TOLERANCE``
more, another thread count on a CPU, GPU clocks or temperature). Off Linux the /proc counters are
missing: then only the load average is recorded.

``rounds_line`` and ``round_temperature_spread`` read a report's ``rounds_conditions`` (the GPU's power and
temperature at the start of each paired round or grid cell, and the cooldown waited: ``latency.cooldown``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

LOAD_TOLERANCE_CORES = 0.5   # other processes' busy cores further apart than this: another machine, in effect
WAIT_TOLERANCE = 0.25        # (1 + cpu_wait_ratio) of two runs further apart than this factor
CLOCK_TOLERANCE = 0.05       # GPU SM clocks further apart than this (at start or at end)
TEMPERATURE_TOLERANCE_C = 10.0
ROUND_TEMPERATURE_SPREAD_C = 5.0   # paired rounds that started at GPU temperatures further apart get a warning


def usable_cores() -> list[int]:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _busy_cpu_s(cores: list[int]) -> float | None:
    """Busy CPU seconds of every process on ``cores`` since boot (steal counts as busy: the core was not ours)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted, busy = {f"cpu{c}" for c in cores}, 0
    for line in lines:
        parts = line.split()
        if parts and parts[0] in wanted:
            ticks = [int(x) for x in parts[1:9]]   # user nice system idle iowait irq softirq steal
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK") if busy else None


def _run_and_wait_s() -> tuple[float | None, float | None]:
    """Seconds this process's threads have run and waited runnable for a core (schedstat, ns)."""
    run = wait = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None, None
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat", encoding="ascii") as f:
                fields = f.read().split()
        except OSError:   # a thread that ended meanwhile
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return (round(run / 1e9, 4), round(wait / 1e9, 4)) if run else (None, None)


def snapshot(cores: list[int] | None = None) -> dict[str, Any]:
    """The counters now: load average, busy CPU seconds on our cores, this process's CPU seconds, its
    threads' run and wait seconds, the time."""
    cores = usable_cores() if cores is None else cores
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    run, wait = _run_and_wait_s()
    return {"loadavg": load, "busy_cpu_s": _busy_cpu_s(cores), "own_cpu_s": round(time.process_time(), 4),
            "run_s": run, "wait_s": wait, "time_s": time.perf_counter()}


def cpu_wait_ratio(start: dict[str, Any], end: dict[str, Any]) -> float | None:
    """Seconds our threads waited for a core per second they ran, between two snapshots."""
    if None in (start.get("run_s"), end.get("run_s"), start.get("wait_s"), end.get("wait_s")):
        return None
    run = end["run_s"] - start["run_s"]
    return max(0.0, (end["wait_s"] - start["wait_s"]) / run) if run > 0 else None


def other_busy_cores(start: dict[str, Any], end: dict[str, Any]) -> float | None:
    """Cores kept busy by other processes between two snapshots (None without /proc counters)."""
    window = end["time_s"] - start["time_s"]
    if start.get("busy_cpu_s") is None or end.get("busy_cpu_s") is None or window <= 0:
        return None
    others = (end["busy_cpu_s"] - start["busy_cpu_s"]) - (end["own_cpu_s"] - start["own_cpu_s"])
    return max(0.0, others / window)   # counters tick every 10 ms: a short window can dip below zero


def start_conditions(choice: dict[str, Any] | None = None) -> dict[str, Any]:
    """The conditions as a measurement starts (``environment["conditions"]``); ``choice``: how the CPU
    threads were chosen (``core.threads.current_choice()``), where they were."""
    cores = usable_cores()
    torch = sys.modules.get("torch")
    out: dict[str, Any] = {"cores": len(cores),
                           "torch_threads": torch.get_num_threads() if torch is not None else None}
    if choice is not None:
        out["threads"] = choice
    out["start"] = snapshot(cores)
    return out


def finish_conditions(conditions: dict[str, Any]) -> dict[str, Any]:
    """Add the end snapshot and the load over the run to ``conditions`` (in place; returned)."""
    start = conditions.get("start")
    if not start:
        return conditions
    end = conditions["end"] = snapshot()
    window = end["time_s"] - start["time_s"]
    conditions["window_s"] = round(window, 3)
    others = other_busy_cores(start, end)
    conditions["other_busy_cores"] = None if others is None else round(others, 2)
    own = (end["own_cpu_s"] - start["own_cpu_s"]) / window if window > 0 else None
    conditions["own_busy_cores"] = None if own is None else round(own, 2)
    conditions["cores_free"] = None if others is None else round(max(0.0, conditions["cores"] - others), 2)
    wait = cpu_wait_ratio(start, end)
    conditions["cpu_wait_ratio"] = None if wait is None else round(wait, 3)
    return conditions


# -- two reports' conditions ---------------------------------------------------------------------------
def host_load(conditions: dict[str, Any]) -> float | None:
    """Other processes' busy cores over the run; without counters, the 1-minute load average at the end
    (or start), which counts this process too."""
    if conditions.get("other_busy_cores") is not None:
        return float(conditions["other_busy_cores"])
    for edge in ("end", "start"):
        load = (conditions.get(edge) or {}).get("loadavg")
        if load:
            return float(load[0])
    return None


def _threads(conditions: dict[str, Any]) -> int | None:
    choice = conditions.get("threads") or {}
    return choice.get("threads") or conditions.get("torch_threads")


def _gpu(env: dict[str, Any], edge: str) -> dict[str, Any]:
    return (env.get("gpu") or {}).get(edge) or {}


def _gpu_differences(base: dict[str, Any], other: dict[str, Any]) -> list[str]:
    out = []
    for edge in ("start", "end"):
        a, b = _gpu(base, edge).get("sm_clock_mhz"), _gpu(other, edge).get("sm_clock_mhz")
        if a and b and abs(b / a - 1) > CLOCK_TOLERANCE:
            out.append(f"the GPU's SM clock at the {edge} was {a:g} -> {b:g} MHz")
            break
    for edge in ("start", "end"):
        a, b = _gpu(base, edge).get("temperature_c"), _gpu(other, edge).get("temperature_c")
        if a is not None and b is not None and abs(b - a) > TEMPERATURE_TOLERANCE_C:
            out.append(f"the GPU's temperature at the {edge} was {a:g} -> {b:g} C")
            break
    return out


def differences(base_env: dict[str, Any], other_env: dict[str, Any], cpu: bool = True) -> list[str]:
    """The conditions two runs differ in enough to move a timing, each as a phrase ("host load changed
    between the runs (0.1 -> 1.9 busy cores)"); empty where nothing recorded differs. ``cpu``: the
    model ran on the CPU, where the thread count matters too."""
    a, b = base_env.get("conditions") or {}, other_env.get("conditions") or {}
    out = []
    load_a, load_b = host_load(a), host_load(b)
    if load_a is not None and load_b is not None and abs(load_b - load_a) > LOAD_TOLERANCE_CORES:
        what = "busy cores" if a.get("other_busy_cores") is not None else "load average"
        out.append(f"host load changed between the runs ({load_a:.1f} -> {load_b:.1f} {what})")
    wait_a, wait_b = a.get("cpu_wait_ratio"), b.get("cpu_wait_ratio")
    if wait_a is not None and wait_b is not None and not out:   # one phrase for one cause
        if max(1 + wait_a, 1 + wait_b) / min(1 + wait_a, 1 + wait_b) > 1 + WAIT_TOLERANCE:
            out.append(f"host load changed between the runs (waits for a core {wait_a:.2f} -> {wait_b:.2f} s "
                       "per CPU second)")
    threads_a, threads_b = _threads(a), _threads(b)
    if cpu and threads_a and threads_b and threads_a != threads_b:
        out.append(f"torch used {threads_a} -> {threads_b} CPU threads")
    return out + _gpu_differences(base_env, other_env)


def summary(env: dict[str, Any]) -> str:
    """What a run rested on, in a few words ("1 of 2 cores' threads, others 1.9 busy cores, waited 0.56 s
    per CPU s; SM 1980 MHz, 41 C"), or "" where nothing was recorded."""
    cond, parts = env.get("conditions") or {}, []
    threads = _threads(cond)
    if threads and cond.get("cores"):
        parts.append(f"{threads} CPU thread{'s' if threads > 1 else ''} on {cond['cores']} cores")
    load = host_load(cond)
    if load is not None:
        parts.append(f"others {load:.1f} {'busy cores' if cond.get('other_busy_cores') is not None else 'load'}")
    if cond.get("cpu_wait_ratio") is not None:
        parts.append(f"waited {cond['cpu_wait_ratio']:.2f} s per CPU s")
    gpu = _gpu(env, "end") or _gpu(env, "start")
    if gpu.get("sm_clock_mhz") or gpu.get("temperature_c") is not None:
        parts.append(f"SM {gpu.get('sm_clock_mhz') or '?'} MHz, {gpu.get('temperature_c', '?')} C")
    return ", ".join(parts)


def _joined(values: list, fmt: str) -> str:
    return "/".join("-" if v is None else fmt.format(v) for v in values)


def rounds_line(section: dict[str, Any] | None) -> str | None:
    """One line: the temperature and power each round (or cell) started at and the cooldown waited, or None."""
    if not section or not section.get("rounds"):
        return None
    rounds, unit, setting = section["rounds"], section.get("unit") or "round", section.get("cooldown")
    starts, waits = [], []
    temps, powers = [r.get("temperature_c") for r in rounds], [r.get("power_w") for r in rounds]
    if any(t is not None for t in temps):
        starts.append(f"{unit}s started at {_joined(temps, '{:.0f}')} C")
    if any(p is not None for p in powers):
        starts.append(f"{_joined(powers, '{:.0f}')} W")
    if setting == "auto":
        band = section.get("band") or {}
        capped = [str(r.get(unit)) for r in rounds if r.get("capped")]
        idle_w, idle_c = section.get("idle_power_w"), section.get("idle_temperature_c")
        waited = [r.get("waited_s") for r in rounds[1:]]
        text = f"cooldown auto waited {_joined(waited, '{:.1f}')} s" if waited else "cooldown auto"
        if idle_w is not None or idle_c is not None:
            text += (f" (to within {band.get('power_fraction', 0):.0%} or {band.get('power_w', 0):g} W of idle "
                     f"{_joined([idle_w], '{:.0f}')} W and {band.get('temperature_c', 0):g} C of "
                     f"{_joined([idle_c], '{:.0f}')} C, at most {band.get('cap_s', 0):g} s)")
        if capped:
            text += f"; the cap was reached before {unit} {', '.join(capped)}"
        waits.append(text)
    elif setting:
        waits.append(f"cooldown {setting:g} s before each {unit} after the first")
    groups = ([", ".join(starts)] if starts else []) + waits
    return f"steady {unit}s: " + "; ".join(groups) if groups else None


def round_temperature_spread(section: dict[str, Any] | None, labels: set[str] | None = None
                             ) -> tuple[float, dict, dict] | None:
    """(spread in C, the coldest round's record, the hottest's) over the rounds of ``labels`` (all: None)
    when it exceeds ``ROUND_TEMPERATURE_SPREAD_C``, else None."""
    rounds = [r for r in (section or {}).get("rounds") or [] if r.get("temperature_c") is not None
              and (labels is None or r.get("label") in labels)]
    if len(rounds) < 2:
        return None
    cold = min(rounds, key=lambda r: r["temperature_c"])
    hot = max(rounds, key=lambda r: r["temperature_c"])
    spread = hot["temperature_c"] - cold["temperature_c"]
    return (spread, cold, hot) if spread > ROUND_TEMPERATURE_SPREAD_C else None
