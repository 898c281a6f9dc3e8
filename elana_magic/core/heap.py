"""Giving the memory a measurement (or a freed model copy) left behind back to the operating system.

On Linux, glibc's allocator keeps freed blocks of its heap for reuse: a measurement's temporaries, or
a model copy the notebook deleted, stay in the process's resident memory. Under a memory limit (a
2 GB Binder session) that is what gets the kernel killed, so before and after each measurement the
magics collect garbage and ask glibc to return its free pages (``malloc_trim(0)``). Elsewhere this only
collects garbage.
"""

from __future__ import annotations

import ctypes
import gc
import sys


def release_freed_memory() -> None:
    """Collect garbage, then return the heap's free pages to the OS where the C library can."""
    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to ask
        pass
