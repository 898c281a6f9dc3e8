"""NVIDIA Jetson power rails (INA3221 monitors): through jetson-stats' jtop where its service answers,
read straight from sysfs otherwise.

The module input rail (``VDD_IN``, ``POM_5V_IN``) is the board's total. Other rails are shown apart
and labelled for what they really feed: Orin Nano/NX have no GPU-only rail, their ``VDD_CPU_GPU_CV``
is CPU+GPU+CV together.

jtop (``pip install elana-magic[jetson]``; AGPL-3.0, its ``jtop.service`` runs as root) knows each
board's rails, Thor's included, where sysfs may not show them. It publishes every ``interval`` (0.5 s
asked; the first client sets the service's pace), so its power is held between updates, where sysfs is
read at every sample. Set ``ELANA_JETSON_SOURCE=sysfs`` to skip jtop. Every rail says which was read
(``source``, ``method``). jtop is opened within ``JTOP_OPEN_TIMEOUT_S``; a service that is absent, slow
or stops mid-run is left for the sysfs rails with a note (never a hang), and the client is closed.
"""

from __future__ import annotations

import glob
import os
import threading
import time

from .sensor import Reading, Sensor

SYSFS_ROOT = "/sys"
TEGRA_RELEASE = "/etc/nv_tegra_release"  # present on every Jetson (L4T): jtop is tried there even without sysfs rails
SOURCE_ENV = "ELANA_JETSON_SOURCE"  # "sysfs": never jtop; anything else (default "auto"): jtop when it answers
JTOP_INTERVAL_S = 0.5        # asked of jtop.service (it goes unstable near 0.1 s: jetson_stats#414)
JTOP_OPEN_TIMEOUT_S = 3.0    # connecting, the first data and the rail check, all together
JTOP_CLOSE_TIMEOUT_S = 2.0
JTOP_STALE_PERIODS = 4       # no update for this many intervals (+0.5 s): jtop counts as gone
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0")  # module/system input = total
LABELS = {
    "VDD_IN": "module input (total)",
    "POM_5V_IN": "module input (total)",
    "VIN_SYS_5V0": "system 5V input (total)",
    "VDD_CPU_GPU_CV": "CPU+GPU+CV (shared rail)",
    "VDD_SOC": "SoC",
    "VDD_GPU_SOC": "GPU+SoC (shared rail)",
    "VDD_CPU_CV": "CPU+CV",
    "VDDQ_VDD2_1V8AO": "DRAM+always-on",
    "POM_5V_GPU": "GPU",
    "POM_5V_CPU": "CPU",
    "VDD_SYS_GPU": "GPU",
    "VDD_SYS_CPU": "CPU",
    "VDD_SYS_SOC": "SoC",
    "VDD_SYS_DDR": "DRAM",
}


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _add_note(sensor: Sensor, note: str) -> None:
    sensor.note = f"{sensor.note}; {note}" if sensor.note else note


class JetsonRail(Sensor):
    """One INA3221 channel read from sysfs: power = voltage x current, or the driver's power file."""

    kind = "jetson-rail"
    source = "sysfs"
    method = "integrated INA3221 rail power (sysfs)"

    def __init__(self, rail: str, volt_file: str | None, curr_file: str | None, power_file: str | None = None,
                 update_interval_ms: int | None = None) -> None:
        self.rail = rail
        self.name = f"{rail} - {LABELS.get(rail, rail)}"
        self._volt, self._curr, self._power = volt_file, curr_file, power_file
        self.read_path = power_file or f"{volt_file} x {curr_file}"
        self.counted_in_total = rail in INPUT_RAILS
        if update_interval_ms:
            self.note = f"INA3221 update interval {update_interval_ms} ms"

    def read(self) -> Reading:
        t_before = time.perf_counter()
        if self._power is not None:
            watts = int(_read(self._power)) / 1000.0  # mW
        else:
            watts = int(_read(self._volt)) * int(_read(self._curr)) / 1e6  # mV x mA
        return Reading((t_before + time.perf_counter()) / 2, None, watts)


class JtopLost(RuntimeError):
    """jtop stopped answering (its service stopped, its thread failed, or no update for too long)."""


class JtopSession:
    """One jtop client shared by every rail it reports; closed once (idempotent, bounded in time)."""

    def __init__(self, client, interval_s: float) -> None:
        self.client = client
        self.interval_s = interval_s
        self.last_update = time.perf_counter()
        self.failed: str | None = None
        self._closed = False
        self._lock = threading.Lock()
        try:
            client.attach(self._on_update)  # called by jtop's thread on every new sample
        except Exception:  # noqa: BLE001 - no observer: staleness is then judged from ok() alone
            pass

    def _on_update(self, _client) -> None:
        self.last_update = time.perf_counter()

    def rails(self) -> dict[str, dict]:
        power = self.client.power
        rails = power.get("rail") if isinstance(power, dict) else None
        if not isinstance(rails, dict):
            raise JtopLost("jtop's power has no 'rail' table (jetson-stats older than 4?)")
        return {name: r for name, r in rails.items() if isinstance(r, dict) and r.get("online", True)}

    def power_w(self, rail: str) -> float:
        """The rail's latest power (W) as jtop last published it; JtopLost once jtop is gone."""
        if self.failed is None:
            self._check()
        if self.failed is not None:
            raise JtopLost(self.failed)
        try:
            entry = self.rails()[rail]
            if entry.get("power") is not None:
                return float(entry["power"]) / 1000.0  # mW
            return float(entry["volt"]) * float(entry["curr"]) / 1e6  # mV x mA
        except JtopLost as exc:
            self._fail(str(exc))
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise JtopLost(f"jtop no longer reports {rail} ({type(exc).__name__}: {exc})") from exc

    def _check(self) -> None:
        try:
            alive = self.client.ok(spin=True)  # non-blocking; raises the error jtop's thread stored
        except Exception as exc:  # noqa: BLE001 - whatever jtop raised, it is gone: fall back
            self._fail(f"jtop failed ({type(exc).__name__}: {_first_line(exc)})")
            return
        if not alive:
            self._fail("jtop stopped (its service closed the connection)")
            return
        silent = time.perf_counter() - self.last_update
        if silent > JTOP_STALE_PERIODS * self.interval_s + 0.5:
            self._fail(f"no update from jtop.service for {silent:.1f} s")

    def _fail(self, why: str) -> None:
        with self._lock:
            if self.failed is None:
                self.failed = why
        self.close(wait=False)  # called from the sampler's thread: never stall it

    def close(self, wait: bool = True) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _close_client(self.client, self._on_update, wait=wait)


def _close_client(client, observer=None, wait: bool = True) -> None:
    """client.close() and its thread's end, on a helper thread; waited for at most JTOP_CLOSE_TIMEOUT_S."""

    def run() -> None:
        try:
            if observer is not None:
                client.detach(observer)
            client.close()
            if isinstance(client, threading.Thread) and client.is_alive():
                client.join(JTOP_CLOSE_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - closing what already failed: nothing more to do
            pass

    if threading.current_thread() is client:  # never join oneself (a jtop observer thread)
        run()
        return
    closer = threading.Thread(target=run, name="elana-jtop-close", daemon=True)
    closer.start()
    if wait:
        closer.join(JTOP_CLOSE_TIMEOUT_S)


class JtopRail(Sensor):
    """One rail as jtop reports it; the same rail from sysfs takes over if jtop stops answering."""

    kind = "jetson-rail"

    def __init__(self, session: JtopSession, rail: str, fallback: JetsonRail | None = None) -> None:
        self.session = session
        self.rail = rail
        self.name = f"{rail} - {LABELS.get(rail, rail)}"
        self.counted_in_total = rail in INPUT_RAILS
        self.fallback = fallback
        self.source = "jtop"
        self.method = "integrated INA3221 rail power (jtop)"
        self.read_path = f"jtop.service, every {session.interval_s:g} s (power held between updates)"
        self.note = f"read through jtop (jetson-stats), updated every {session.interval_s:g} s"
        self._switched = False

    def read(self) -> Reading:
        if self._switched:
            return self.fallback.read()
        t_before = time.perf_counter()
        try:
            watts = self.session.power_w(self.rail)
        except JtopLost as exc:
            if self.fallback is None:
                raise
            self._switch(str(exc))
            return self.fallback.read()
        return Reading((t_before + time.perf_counter()) / 2, None, watts)

    def _switch(self, why: str) -> None:
        self._switched = True
        self.source = "sysfs"
        self.method = "integrated INA3221 rail power (jtop, then sysfs)"
        self.read_path = self.fallback.read_path
        self.note = f"{why}: read from sysfs since"

    def close(self) -> None:
        self.session.close()


def open_jtop(timeout_s: float | None = None, interval_s: float | None = None) -> tuple[JtopSession | None, str | None]:
    """(session, None) when jtop.service answers with power rails; (None, why) otherwise.

    ``why`` is None where jetson-stats is not installed (nothing to say: sysfs is the normal path).
    """
    timeout_s = JTOP_OPEN_TIMEOUT_S if timeout_s is None else timeout_s
    interval_s = JTOP_INTERVAL_S if interval_s is None else interval_s
    try:
        from jtop import jtop
    except ImportError:
        return None, None
    except Exception as exc:  # noqa: BLE001 - a broken install is reported, never raised
        return None, f"jetson-stats did not import ({type(exc).__name__}: {_first_line(exc)})"
    box: dict = {}
    lock = threading.Lock()

    def start() -> None:
        client = None
        try:
            client = jtop(interval=interval_s)
            client.start()  # connects to jtop.service and waits for its first data
            session = JtopSession(client, float(getattr(client, "interval", None) or interval_s))
            if not session.rails():
                raise JtopLost("jtop reports no power rail")
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, who falls back
            with lock:
                box["error"] = exc
            if client is not None:
                _close_client(client)
            return
        with lock:
            late = box.get("abandoned", False)
            box["session"] = session
        if late:  # the caller gave up waiting: leave nothing behind
            session.close()

    opener = threading.Thread(target=start, name="elana-jtop-open", daemon=True)
    opener.start()
    try:
        opener.join(timeout_s)
    finally:
        with lock:
            done = "session" in box or "error" in box
            if not done:
                box["abandoned"] = True
    if not done:
        return None, f"jtop.service did not answer within {timeout_s:g} s"
    if "error" in box:
        exc = box["error"]
        return None, f"jtop not used ({type(exc).__name__}: {_first_line(exc)})"
    return box["session"], None


def _hwmon_rails(root: str) -> list[JetsonRail]:
    rails = []
    for hwmon in sorted(glob.glob(os.path.join(root, "bus/i2c/drivers/ina3221*/*/hwmon/hwmon*"))):
        interval = None
        try:
            interval = int(_read(os.path.join(hwmon, "update_interval")))
        except (OSError, ValueError):
            pass
        for label_file in sorted(glob.glob(os.path.join(hwmon, "in*_label"))):
            channel = os.path.basename(label_file)[2:].split("_")[0]
            rail = _read(label_file)
            volt, curr = os.path.join(hwmon, f"in{channel}_input"), os.path.join(hwmon, f"curr{channel}_input")
            if rail.lower().startswith("sum of") or not (os.path.exists(volt) and os.path.exists(curr)):
                continue
            rails.append(JetsonRail(rail, volt, curr, update_interval_ms=interval))
    return rails


def _iio_rails(root: str) -> list[JetsonRail]:
    """Older JetPack (ina3221x driver): rail_name_N and in_power N_input (mW)."""
    rails = []
    for dev in sorted(glob.glob(os.path.join(root, "bus/i2c/drivers/ina3221x/*/iio:device*"))):
        for name_file in sorted(glob.glob(os.path.join(dev, "rail_name_*"))):
            n = name_file.rsplit("_", 1)[-1]
            power = os.path.join(dev, f"in_power{n}_input")
            if os.path.exists(power):
                rails.append(JetsonRail(_read(name_file), None, None, power_file=power))
    return rails


def _sysfs_rails(root: str) -> tuple[list[JetsonRail], str | None]:
    rails = _hwmon_rails(root) or _iio_rails(root)
    if not rails:
        return [], "no INA3221 rails in sysfs"
    readable = []
    for rail in rails:
        try:
            rail.read()
            readable.append(rail)
        except (OSError, ValueError):
            continue
    if not readable:
        return [], "INA3221 rails present but unreadable"
    return readable, None


def _jtop_rails(session: JtopSession, sysfs: list[JetsonRail]) -> list[JtopRail]:
    twins = {r.rail: r for r in sysfs}
    rails = []
    for name in session.rails():
        rail = JtopRail(session, name, twins.get(name))
        try:
            rail.read()
        except JtopLost:
            continue
        rails.append(rail)
    return rails


def discover(root: str | None = None, source: str | None = None) -> tuple[list[Sensor], str | None]:
    """The readable rails, or ([], why-not): jtop's where its service answers, sysfs's otherwise.

    ``source``: "auto" (default, or ``ELANA_JETSON_SOURCE``) or "sysfs" (never jtop). Without a module
    input rail, every rail counts.
    """
    root = root or SYSFS_ROOT
    source = (source or os.environ.get(SOURCE_ENV) or "auto").strip().lower()
    sysfs, why_sysfs = _sysfs_rails(root)
    rails: list[Sensor] = []
    jtop_note = None
    if source != "sysfs" and (sysfs or os.path.exists(TEGRA_RELEASE)):
        session, jtop_note = open_jtop()
        if session is not None:
            rails = _jtop_rails(session, sysfs)
            if not rails:
                jtop_note = session.failed or "jtop reports no readable rail"
                session.close()
    if not rails:
        rails = list(sysfs)
        if jtop_note:
            for r in rails:
                _add_note(r, f"{jtop_note}: read from sysfs")
    if not rails:
        return [], why_sysfs if not jtop_note else f"{why_sysfs}; {jtop_note}"
    if not any(r.counted_in_total for r in rails):
        for r in rails:
            r.counted_in_total = True
            _add_note(r, "no module input rail: the total is the sum of rails")
    return rails, None
