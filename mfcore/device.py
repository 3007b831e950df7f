"""The one place that decides where training runs and how many CPU threads it uses.

Order: an explicit choice, then ``MFSTUDIO_DEVICE``, then CUDA, then Apple MPS, then
the CPU. Nothing else in ``mfcore`` asks torch which devices exist.
"""

from __future__ import annotations

import os

import torch

from mfcore.errors import DeviceError

DEVICE_ENV = "MFSTUDIO_DEVICE"
THREADS_ENV = "MFSTUDIO_CPU_THREADS"


def available_devices() -> list[str]:
    """Devices this process can use, best first (for a UI's device picker)."""
    found = []
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(requested: str | None = None) -> torch.device:
    """Pick the device: explicit choice -> env var -> CUDA -> MPS -> CPU.

    ``requested`` may be ``None``/``"auto"`` or a torch device string. Asking for a
    device that is not present raises :class:`DeviceError` instead of silently
    falling back, so a run never claims a GPU it did not use.
    """
    choice = (requested or "").strip().lower()
    if choice in ("", "auto"):
        choice = os.environ.get(DEVICE_ENV, "").strip().lower()
    if choice in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, ValueError):
        where = f" (from ${DEVICE_ENV})" if (requested or "").strip().lower() in ("", "auto") else ""
        raise DeviceError(f"unknown device {choice[:40]!r}{where}; use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no CUDA GPU is available; use device 'auto' or 'cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"{choice} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not _mps_available():
        raise DeviceError("MPS was requested but is not available; use device 'auto' or 'cpu'")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {requested!r}; use auto, cpu, cuda or mps")
    return device


def describe_device(device: torch.device, threads: int | None = None) -> str:
    """Human-readable name, e.g. ``"cuda:0 (NVIDIA H100 80GB HBM3)"`` or ``"cpu (1 thread)"``
    (``threads``: the job's CPU threads, default torch's)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    threads = threads or torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads != 1 else ''})"


def default_cpu_threads() -> int:
    """Threads for one CPU training job.

    Measured on the 2-core machines this runs on (benchmarks/threads.py): with a web
    server or a second job on the other core, two spinning OpenMP threads ran many
    times slower than one, while on a quiet box two threads gained under 1.5x. One
    thread per job is the robust default; bigger machines get half their cores (max 8).
    ``MFSTUDIO_CPU_THREADS`` overrides.
    """
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise DeviceError(f"{THREADS_ENV}={env!r} is not a whole number of threads") from None
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(8, cores // 2)


KERNEL_THREADS_MIN_RATINGS = 4_000_001
"""From this many training ratings on, the compiled kernels use every core by default
(the per-rating SGD's cache-blocked schedule starts there too)."""


def default_kernel_threads(n_ratings: int) -> int:
    """Threads for the compiled CPU kernels of one job (blocked per-rating SGD, ALS).

    Unlike torch's spinning OpenMP threads, these wait on futures. Measured with
    ``benchmarks/threads.py`` on 2 cores, 5M ratings: 1 -> 2 threads took an SGD epoch
    from 0.39 to 0.27 s on a quiet box and cost nothing with the other core busy (0.44 vs
    0.43 s), where 2 torch threads ran Adam 3.8x slower. Below the threshold the tables fit
    in cache and one thread is as fast (ALS at 300k ratings: 0.082 s vs 0.093 s), so small
    jobs leave the other core to the web server. ``MFSTUDIO_CPU_THREADS`` overrides.
    """
    if os.environ.get(THREADS_ENV, "").strip() or n_ratings < KERNEL_THREADS_MIN_RATINGS:
        return default_cpu_threads()
    return max(1, min(8, os.cpu_count() or 1))


def configure_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count (process-wide) and return it."""
    n = default_cpu_threads() if threads is None or threads <= 0 else int(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
