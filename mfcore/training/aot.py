"""The default preset's compiled loops, built ahead of time into a plain C extension.

numba caches its JIT kernels on disk, yet a fresh process pays numba's own start before
the first call: importing numba (~0.3 s), its CPU target (~0.45 s, which imports
scipy.linalg) and LLVM (~0.2 s), about a third of a cold ``python -m mfcore train``
(benchmarks/NOTES.md, section 12). The loops every default-preset run calls (the
implicit-feedback pass, its fold, the per-epoch test errors) are therefore also built
with ``numba.pycc`` from the same njit functions into one extension module, for this
machine's CPU, at set-up (``python -m mfcore build-kernels``, run by ``scripts/env.sh``).

:func:`kernels` hands out that module's functions when its fingerprint (the kernel
sources and this CPU) matches, else numba's JIT dispatchers: the same code, with the
same results (a test compares them bit for bit), so a missing or stale build costs start-up
time only. A call whose argument types the build does not cover goes to the JIT kernel.

``MFSTUDIO_AOT=0`` turns the build off; ``MFSTUDIO_AOT_DIR`` puts it elsewhere (tests).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable

import numpy as np

MODULE = "mfcore_kernels"
HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "_aot"

# exported name -> (module, attribute of the njit dispatcher, return type, argument types)
_F2 = "f4[:, ::1]"  # a C-contiguous float32 table
_PASS_ARGS = ("i8[::1]", "i8[::1]", "i4[::1]", "f4[::1]", _F2, _F2, _F2, _F2, _F2,
              "f4", "f4", "f4", "f4", "f4", "f4[::1]", "f4[::1]", "f4[::1]", "b1", "i8", _F2)
EXPORTS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "users_pass": ("mfcore.training.implicit_kernels", "users_pass", "f8", _PASS_ARGS),
    "users_pass_k64": ("mfcore.training.implicit_kernels", "users_pass_k64", "f8", _PASS_ARGS),
    "fold_users": ("mfcore.training.implicit_kernels", "fold_users", "void", ("i8[::1]", "i4[::1]", _F2, _F2, _F2)),
    "fold_users_k64": ("mfcore.training.implicit_kernels", "fold_users_k64", "void",
                       ("i8[::1]", "i4[::1]", _F2, _F2, _F2)),
    "heldout_errors": (
        "mfcore.training.kernels", "_heldout_errors", "UniTuple(f8, 2)",
        ("i4[::1]", "i4[::1]", "f4[::1]", _F2, _F2, _F2, _F2, "f4", "b1", "f4", "f4"),
    ),
}
_DTYPES = {"i4": np.dtype(np.int32), "i8": np.dtype(np.int64), "f4": np.dtype(np.float32), "f8": np.dtype(np.float64)}
SOURCES = ("implicit_kernels.py", "simd.py", "kernels.py", "heldout.py", "aot.py")
"""Files whose text the build depends on (any edit makes it stale)."""


def build_dir() -> Path:
    return Path(os.environ.get("MFSTUDIO_AOT_DIR") or DEFAULT_DIR)


def enabled() -> bool:
    return os.environ.get("MFSTUDIO_AOT", "1").strip().lower() not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=1)
def _cpu_identity() -> str:
    """The CPU's model and instruction-set flags (the build uses all of them)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        import platform

        return f"{platform.machine()} {platform.processor()}"
    first = text.split("\n\n", 1)[0]
    keep = [line for line in first.splitlines() if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    return "\n".join(keep)


def cpu_has(flag: str) -> bool:
    """Whether this CPU reports an instruction-set ``flag`` (e.g. ``avx512f``; Linux only)."""
    return flag in _cpu_identity().split()


def fingerprint() -> str:
    """What a build is valid for: the kernel sources, this CPU, this Python."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((HERE / name).read_bytes())
    h.update(_cpu_identity().encode())
    h.update(sys.version.encode())
    return h.hexdigest()


def _stamp_path(folder: Path) -> Path:
    return folder / f"{MODULE}.json"


def _extension_path(folder: Path) -> Path | None:
    found = sorted(folder.glob(f"{MODULE}.*.so")) + sorted(folder.glob(f"{MODULE}.*.pyd"))
    return found[0] if found else None


def is_current(folder: Path | None = None) -> bool:
    folder = folder or build_dir()
    try:
        stamp = json.loads(_stamp_path(folder).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("fingerprint") == fingerprint() and _extension_path(folder) is not None


def _load_module(folder: Path) -> ModuleType | None:
    if not is_current(folder):
        return None
    path = _extension_path(folder)
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:  # pragma: no cover
        return None
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError:  # built for another Python or damaged: the JIT kernels do the work
        return None
    return module


def _jit(name: str) -> Callable[..., Any]:
    module, attr = EXPORTS[name][:2]
    return getattr(importlib.import_module(module), attr)


def _array_specs(argtypes: tuple[str, ...]) -> list[tuple[int, np.dtype, int]]:
    """(position, dtype, ndim) of each array argument: "f4[:, ::1]" -> float32, 2 dimensions."""
    return [(n, _DTYPES[t.split("[")[0]], t.count(",") + 1) for n, t in enumerate(argtypes) if "[" in t]


def _fits(args: tuple[Any, ...], specs: list[tuple[int, np.dtype, int]], n_args: int) -> bool:
    """Whether the arrays are exactly what the build was compiled for (dtype, dimensions,
    C order). The extension does not check: another dtype would be read as garbage."""
    if len(args) != n_args:
        return False
    for n, dtype, ndim in specs:
        a = args[n]
        if (not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim
                or not a.flags.c_contiguous):
            return False
    return True


def _guarded(name: str, native: Callable[..., Any]) -> Callable[..., Any]:
    """The native function for arguments it was built for; anything else goes to the JIT kernel."""
    argtypes = EXPORTS[name][3]
    specs, n_args = _array_specs(argtypes), len(argtypes)

    def call(*args: Any) -> Any:
        if _fits(args, specs, n_args):
            return native(*args)
        return _jit(name)(*args)

    call.__name__ = name
    return call


_lock = threading.Lock()
_kernels: SimpleNamespace | None = None


def kernels() -> SimpleNamespace:
    """The exported loops by name (``users_pass``, ``users_pass_k64``, ``fold_users``, ...): native
    where built, else JIT (which imports numba)."""
    global _kernels
    if _kernels is None:
        with _lock:
            if _kernels is None:
                module = _load_module(build_dir()) if enabled() else None
                if module is not None:
                    fns = {name: _guarded(name, getattr(module, name)) for name in EXPORTS}
                else:
                    fns = {name: _jit(name) for name in EXPORTS}
                _kernels = SimpleNamespace(native=module is not None, **fns)
    return _kernels


def reset() -> None:
    """Forget the loaded choice (tests switch builds)."""
    global _kernels
    with _lock:
        _kernels = None


def build(folder: Path | None = None) -> Path:
    """Compile the exported kernels for this CPU into ``folder`` (atomically replacing an
    older build); returns the extension's path. Needs a C compiler and Python's headers."""
    import warnings

    folder = folder or build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba.pycc announces its deprecation
        from numba.pycc import CC

    cc = CC(MODULE)
    cc.target_cpu = "host"
    cc.verbose = False
    for name, (module, attr, restype, argtypes) in EXPORTS.items():
        signature = f"{restype}({', '.join(argtypes)})"
        cc.export(name, signature)(_trampoline(getattr(importlib.import_module(module), attr)))
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cc.output_dir = tmp
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cc.compile()
        built = _extension_path(Path(tmp))
        if built is None:  # pragma: no cover - pycc reports its own errors
            raise RuntimeError("numba.pycc produced no extension module")
        old = _extension_path(folder)
        if old is not None:
            old.unlink()
        target = folder / built.name
        shutil.move(str(built), target)
    stamp = _stamp_path(folder)
    tmp_stamp = stamp.with_suffix(".tmp")
    tmp_stamp.write_text(json.dumps({"fingerprint": fingerprint(), "exports": sorted(EXPORTS)}))
    os.replace(tmp_stamp, stamp)
    return target


def _trampoline(dispatcher: Any) -> Callable[..., Any]:
    """``def trampoline(a, b, ...): return dispatcher(a, b, ...)``: pycc compiles the function it
    is given with default flags; through the call the dispatcher keeps its own (fastmath,
    inlined helpers). numba needs named positional parameters, hence the generated def."""
    import inspect

    names = ", ".join(inspect.signature(dispatcher.py_func).parameters)
    namespace: dict[str, Any] = {"dispatcher": dispatcher}
    exec(f"def trampoline({names}):\n    return dispatcher({names})\n", namespace)  # noqa: S102
    return namespace["trampoline"]


def ensure_built(folder: Path | None = None, *, only_if_stale: bool = False) -> tuple[bool, str]:
    """Build the extension (unless it is current and ``only_if_stale``): (ok, a line saying what
    happened, empty when nothing was done). Never raises: without a compiler the JIT kernels work."""
    import time

    folder = folder or build_dir()
    if only_if_stale and is_current(folder):
        return True, ""
    t0 = time.perf_counter()
    try:
        path = build(folder)
    except Exception as exc:  # no compiler, no headers
        return False, (f"warning: the ahead-of-time kernels were not built ({type(exc).__name__}: {exc}); "
                       "training uses numba's JIT kernels (each new process starts ~1 s slower)")
    return True, f"built {path.name} in {time.perf_counter() - t0:.1f} s"
