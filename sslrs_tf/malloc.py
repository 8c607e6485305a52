"""glibc malloc settings that let the input pipeline reuse its memory instead of faulting it in again.

A 256 px SEN12MS record is 2.49 MB, and tf.data allocates every record, its parsed features and their
crops with ``malloc`` from several threads. With glibc's defaults those blocks land in per-thread arenas
whose heaps are unmapped when they empty, or are mapped one by one, so freshly allocated memory is
faulted in, zeroed, by the kernel again and again: measured with ``getrusage``, the training pipeline
at 128 px crops took about 800 minor page faults per sample and spent more time in the kernel than
in its own work. One arena, no trimming and no separate mapping of large blocks keep the freed
blocks for the next records (``bench/input_pipeline.py`` runs with them, as every command does).

Every command line calls :func:`keep_freed_memory` before TensorFlow starts its threads (through
:func:`sslrs_tf.errors.run_entry_point`); a Python program that feeds a model from
:func:`sslrs_tf.data.pipeline.make_dataset` can call it first thing. Memory the process frees is
kept for reuse rather than returned to the system.

Written by hand (``ctypes`` and glibc's ``mallopt``) because no library sets malloc's options at run
time; glibc reads its ``MALLOC_*`` environment variables only when a process starts.
"""

import ctypes
import os
import sys

# glibc's malloc.h: the option numbers mallopt takes
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8

#: what :func:`keep_freed_memory` sets: blocks up to 64 MB from the heap, never give its top back, one arena
SETTINGS = {M_MMAP_THRESHOLD: 64 << 20, M_TRIM_THRESHOLD: 2**31 - 1, M_ARENA_MAX: 1}

_applied = None


def user_chose_malloc(environ=os.environ):
    """Whether the environment already configures malloc (``MALLOC_*`` variables, ``GLIBC_TUNABLES``, or
    another malloc preloaded): then it is left as the user set it."""
    return ("GLIBC_TUNABLES" in environ or any(k.startswith("MALLOC_") for k in environ)
            or "malloc" in environ.get("LD_PRELOAD", ""))


def keep_freed_memory():
    """Applies :data:`SETTINGS` to this process's glibc malloc, once; returns whether they are in effect.

    Nothing is changed (and False returned) off Linux, on a C library without ``mallopt`` (musl), or
    when :func:`user_chose_malloc`.
    """
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux") and not user_chose_malloc():
            try:
                mallopt = ctypes.CDLL("libc.so.6").mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
            # Every option is tried, whatever the others return.
            _applied = all([mallopt(option, value) == 1 for option, value in SETTINGS.items()])
    return _applied
