"""The machine a benchmark ran on, as its JSON line records it.

The CPU model and its widest vector instructions go in because the figures depend on them:
this project's VMs have come with and without AVX-512 (``mixed_bfloat16`` needs AVX512-BF16
or AMX to be anything but emulated), and their matrix-multiply rates differ by a third. So does
the allocator PyTorch runs on (:func:`use_jemalloc`).
"""

import ctypes.util
import os
import pathlib
import platform
import sys

#: jemalloc configured to keep freed pages, as Intel's PyTorch CPU tuning guide suggests
JEMALLOC_CONF = "oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1"


def _cpuinfo(key):
    """The value of the first `key` line of /proc/cpuinfo; None where there is none (not Linux)."""
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, else what `platform` says."""
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def vector_isa():
    """The widest x86 vector extensions the CPU reports: e.g. ``"avx512f+avx512_bf16"``, ``"avx2"``."""
    flags = _cpuinfo("flags")
    if flags is None:
        return "unknown"
    flags = flags.split()
    wide = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return "+".join(wide) if wide else ("avx2" if "avx2" in flags else "no avx2")


def describe():
    """``"x86_64, 2 cores, AMD EPYC, avx2"``: what each benchmark's ``machine`` key holds."""
    return f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}, {vector_isa()}"


def allocator():
    """Which malloc this process runs on: glibc's (PyTorch's default), or jemalloc with its MALLOC_CONF."""
    if "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return f"jemalloc ({os.environ.get('MALLOC_CONF', 'default settings')})"
    return "glibc"


def use_jemalloc():
    """Runs this script again with jemalloc preloaded and keeping freed pages (returns if it already is).

    With glibc's malloc, PyTorch's large activation buffers go back to the OS when freed and
    fault in again, zeroed, at the next step (measured here: ~65 000 page faults per
    Dual-SimCLR ResNet-18 step at batch 16, ~220 000 at 64; TensorFlow's allocator keeps its
    buffers: ~400 and ~2 000). Intel's PyTorch CPU tuning guide recommends this; the research
    code runs on the default. Both sides of a comparison share the process, so both get it.
    """
    if "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    env = jemalloc_env()
    if env is None:
        raise SystemExit("--torch-allocator jemalloc: libjemalloc not found (apt-get install libjemalloc2)")
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def jemalloc_env():
    """This process's environment plus jemalloc preloaded with :data:`JEMALLOC_CONF`; None without libjemalloc."""
    library = ctypes.util.find_library("jemalloc")
    return None if library is None else {**os.environ, "LD_PRELOAD": library, "MALLOC_CONF": JEMALLOC_CONF}
