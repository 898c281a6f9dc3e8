"""The one model resolver: what the user named -> a config, a model, a tokenizer, or one line saying why not.

The forms, the same for every magic and the command:

* nothing (``None``): the embedded default model (``models.default_model``);
* ``random:PRESET``: random weights of a real architecture's shape (``models.PRESETS``);
* a local folder (``is_path``: starts with ``/ . ~``, holds a backslash, exists, or is no valid hub id);
* a hub id (``org/name`` or ``name``).

The Hub: a config (a few KB, for sizing on the meta device) comes from the local cache, else from the Hub when
it answers. Weights and tokenizers take ``download`` by name: False (the magics) reads the local cache only,
True (the command) fetches when the Hub answers. Either way a hub id that is neither cached nor reachable is
one line at once, not a minute of retries. No custom code runs, and nothing asks on standard input, unless
``trust_remote_code``. Every failure is one ``ModelLoadError`` line.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

from .core.errors import ElanaError, one_line
from .models import PRESETS, LoadedModel, default_model, preset_config, random_model

_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


class ModelLoadError(ElanaError, ValueError):
    """A model, tokenizer or config that cannot be loaded, in one line (a UsageError in magics, exit 2 in the
    command)."""


def is_path(spec: str) -> bool:
    """The one rule: a folder rather than a hub id ('org/name')."""
    return (spec.startswith(("/", ".", "~")) or "\\" in spec or os.path.exists(spec)
            or not _HUB_ID.fullmatch(spec))


def _clean(spec: Any) -> str:
    text = os.path.expanduser(str(spec).strip())
    if not text:
        raise ModelLoadError("the model name is empty: give random:PRESET, a local folder or a hub id")
    return text


def _preset(spec: str) -> str:
    name = spec.split(":", 1)[1]
    if name not in PRESETS:
        raise ModelLoadError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return name


# -- a folder's config.json ---------------------------------------------------------------------------------

def read_local_config(folder: str) -> dict[str, Any]:
    """The parsed ``config.json`` of a local folder; a missing or broken file is a ModelLoadError."""
    import json

    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise ModelLoadError(f"{folder!r} has no config.json: pass the folder that holds the model's config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"could not load {folder!r}: its config.json is not valid JSON ({one_line(exc)}); "
                             "fix or replace it") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"could not load {folder!r}: its config.json holds a JSON {type(config).__name__}, "
                             "not a config object; fix or replace it")
    return config


def custom_code_note(config: dict[str, Any], target: str, trust_remote_code: bool) -> str | None:
    """Why a config that names custom code (``auto_map``) can't be used without --trust-remote-code, or None."""
    if trust_remote_code or "auto_map" not in config:
        return None
    from transformers import CONFIG_MAPPING

    if config.get("model_type") in CONFIG_MAPPING:
        return None  # transformers' own class is used; the custom code is not run
    return (f"{target!r} needs its own Python code (auto_map in config.json), which is not run unless "
            "you pass --trust-remote-code (trust_remote_code=True); read that code first")


def _check_folder(folder: str, trust_remote_code: bool) -> None:
    """A folder's config.json read first: missing, broken, or naming custom code without trust is one line."""
    note = custom_code_note(read_local_config(folder), folder, trust_remote_code)
    if note:
        raise ModelLoadError(note)


def _locate(spec: str, trust_remote_code: bool) -> str:
    """"folder" (its config checked) or "hub"; a path that is no folder is one line."""
    if os.path.isdir(spec):
        _check_folder(spec, trust_remote_code)
        return "folder"
    if is_path(spec):
        raise ModelLoadError(f"no folder {spec!r}: check the path (a hub id looks like 'org/name')")
    return "hub"


# -- the Hub ------------------------------------------------------------------------------------------------

def hub_offline() -> bool:
    truthy = {"1", "true", "yes", "on"}
    if any(os.environ.get(v, "").lower() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover
        return False


def hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except ImportError:  # pragma: no cover
        return "https://huggingface.co"


def reachable(url: str, timeout: float = 3.0) -> bool:
    """A quick TCP connect, so that a machine without network answers at once instead of retrying."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # noqa: BLE001 - an invalid repo id: transformers says why
        return True


def hub_unavailable(repo_id: str, filename: str = "config.json", download: bool = True) -> str | None:
    """Why ``repo_id`` can't be loaded now (not cached, and offline, not to be downloaded, or unreachable within
    a few seconds), or None."""
    if _cached(repo_id, filename):
        return None
    if hub_offline():
        return "the Hub is offline (HF_HUB_OFFLINE)"
    if not download:
        return "the magics don't download (the command elana-magic does)"
    endpoint = hub_endpoint()
    return None if reachable(endpoint) else f"can't reach {endpoint} (no network)"


def _check_hub(repo_id: str, filename: str, download: bool) -> None:
    why = hub_unavailable(repo_id, filename, download)
    if why:
        raise ModelLoadError(f"{repo_id!r} is no folder, and as a hub id it is not in the local cache and {why}: "
                             "check the path, or download it first")


# -- config, model, tokenizer --------------------------------------------------------------------------------

def load_config(spec: str, trust_remote_code: bool = False):
    """A transformers config from ``random:PRESET``, a local folder's config.json or a hub id (cache, else Hub)."""
    from transformers import AutoConfig

    spec = _clean(spec)
    if spec.startswith("random:"):
        return preset_config(_preset(spec))
    where = _locate(spec, trust_remote_code)
    if where == "hub":
        _check_hub(spec, "config.json", download=True)
    # the local copy first: a cached config needs no network (nor its retries when there is none)
    local = where == "folder" or _cached(spec, "config.json")
    try:
        return AutoConfig.from_pretrained(spec, local_files_only=local, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - unrecognized model_type, bad values, the Hub's errors
        raise ModelLoadError(f"transformers can't read the config in {spec!r}: {one_line(exc)}") from None


def single_device(device_map: str | None, spec: str | None) -> str | None:
    """The one device a built-in model goes to (--device_map cpu / cuda:1); a map needs from_pretrained."""
    if device_map is None:
        return None
    import torch

    try:
        return str(torch.device(device_map))
    except (RuntimeError, TypeError, ValueError):
        what = spec or "the embedded default model"
        raise ModelLoadError(f"--device_map {device_map!r} needs a folder or hub id: {what} goes to one "
                             "device (e.g. --device_map cuda:0)") from None


def load_model(spec: str | None, *, download: bool = False, trust_remote_code: bool = False,
               device_map: str | None = None, quiet: bool = False, with_tokenizer: bool = True) -> LoadedModel:
    """The model (and its tokenizer, None where it has none) that ``spec`` names (see the module's forms).

    ``download``: False reads the local hub cache only (the magics), True fetches from the Hub when it
    answers (the command). ``device_map``: passed to ``from_pretrained``; a built-in model goes to that one
    device."""
    if spec is None or _clean(spec).startswith("random:"):
        return _builtin(spec if spec is None else _clean(spec), device_map)
    spec = _clean(spec)
    where = _locate(spec, trust_remote_code)
    if where == "hub":
        _check_hub(spec, "config.json", download)
    from transformers import AutoModelForCausalLM

    # trust_remote_code always explicit: transformers then never asks on standard input
    kwargs: dict[str, Any] = dict(local_files_only=not download, trust_remote_code=trust_remote_code)
    if device_map is not None:
        kwargs["device_map"] = device_map
    with hf_quiet(quiet):
        try:
            model = AutoModelForCausalLM.from_pretrained(spec, **kwargs).eval()
        except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; the user gets one line
            raise ModelLoadError(f"could not load the {where} {spec!r}: {one_line(exc)}") from None
        tokenizer = _optional_tokenizer(spec, download, trust_remote_code) if with_tokenizer else None
    return LoadedModel(model, tokenizer, spec, False)


def _builtin(spec: str | None, device_map: str | None) -> LoadedModel:
    """The embedded default (None) or a random preset, on the one device ``device_map`` names."""
    device = single_device(device_map, spec)
    if spec is None:
        loaded = default_model()
        if device is not None:
            loaded.model.to(device)
        return loaded
    name = _preset(spec)
    model = random_model(name, device=device).to(device or "cpu")
    return LoadedModel(model, None, f"{name} shape, RANDOM weights", True)


def _optional_tokenizer(spec: str, download: bool, trust_remote_code: bool):
    try:
        return load_tokenizer(spec, download=download, trust_remote_code=trust_remote_code)
    except ModelLoadError:  # a folder without tokenizer files: phases use random token ids
        return None


def load_tokenizer(spec: str, *, download: bool = False, trust_remote_code: bool = False):
    """A tokenizer from a local folder or a hub id (``download`` as for ``load_model``)."""
    from transformers import AutoTokenizer

    spec = _clean(spec)
    try:
        if os.path.isfile(os.path.join(spec, "config.json")):
            _check_folder(spec, trust_remote_code)
        elif not os.path.isdir(spec) and not is_path(spec):
            _check_hub(spec, "tokenizer_config.json", download)
        return AutoTokenizer.from_pretrained(spec, local_files_only=not download,
                                             trust_remote_code=trust_remote_code)
    except ModelLoadError as exc:
        raise ModelLoadError(f"could not load a tokenizer from {spec!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"could not load a tokenizer from {spec!r}: {one_line(exc)}") from None


@contextlib.contextmanager
def hf_quiet(quiet: bool = True):
    """Silence transformers' progress bars ("Loading weights") and info logs for the block."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
