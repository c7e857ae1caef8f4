"""The runtime layer: CUDA C++ shipped as package data, compiled by NVRTC, cached, launched on torch's stream.

The path from a ``.cu`` file to a running kernel, in four steps:

1. :func:`kernel_source` reads ``attn_cuda/kernels/<file>.cu`` (package data).
2. :func:`compile_module` compiles it with ``cuda.core.Program`` (NVRTC) for one architecture: the current
   device's exact one (:func:`device_arch`: ``sm_80``, ``sm_86``, ``sm_89``, ``sm_90a``...) or one given.
   Templates are instantiated by *name expressions* (``"flash_fwd<128, true>"``); NVRTC reports the mangled
   symbol each one became. Headers (``cuda_fp16.h``, ``cuda_bf16.h``, ``cuda/std``) come from
   ``cuda.pathfinder`` or ``CUDA_HOME``.
3. The cubin is cached in memory and on disk (:func:`cache_dir`), under a key of everything that changes
   the output (:func:`cache_key`). Disk writes are atomic (a temporary file, then ``os.replace``), so two
   processes compiling the same kernel at once both end with a valid file.
4. :func:`launch` runs a kernel on torch's current stream through ``cuda.core.launch`` with torch tensors
   as pointer arguments; dynamic shared memory above 48 KB is opted into through the function attribute.

Steps 1-3 need no GPU and are tested on the CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import json
import os
import re
import struct
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import __version__

KERNEL_DIR = Path(__file__).parent / "kernels"

#: Shared memory a kernel may use without opting in (the same on every architecture since Volta).
DEFAULT_SMEM_LIMIT = 48 * 1024

#: The C++ standard every kernel is compiled with.
STD = "c++17"


class KernelCompileError(RuntimeError):
    """NVRTC rejected a kernel: the message names the kernel, the architecture and carries the log."""


class KernelLaunchError(ValueError):
    """A launch configuration or argument list is invalid (caught on the host, before the driver sees it)."""


# -- sources and headers ---------------------------------------------------------------------------------


def kernel_files() -> list[str]:
    """Names of the ``.cu`` files shipped with the package."""
    return sorted(p.name for p in KERNEL_DIR.glob("*.cu"))


def kernel_source(filename: str) -> str:
    """The text of ``kernels/<filename>``, with local ``#include "x.cuh"`` lines inlined.

    Inlining keeps the program a single string: the cache key is then a hash of exactly what NVRTC saw.
    """
    path = KERNEL_DIR / filename
    if not path.is_file():
        raise FileNotFoundError(f"no kernel source {filename!r} in {KERNEL_DIR} (have: {kernel_files()})")
    return _inline_local_includes(path, seen=set())


_LOCAL_INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$', re.MULTILINE)


def _inline_local_includes(path: Path, seen: set[Path]) -> str:
    if path in seen:  # a header included twice is inlined once (they all use #pragma once anyway)
        return ""
    seen.add(path)
    text = path.read_text()

    def repl(match: re.Match) -> str:
        inc = path.parent / match.group(1)
        if not inc.is_file():
            return match.group(0)
        return f"// ---- begin {match.group(1)} ----\n{_inline_local_includes(inc, seen)}\n// ---- end ----"

    return _LOCAL_INCLUDE.sub(repl, text)


@functools.cache
def include_dirs() -> tuple[str, ...]:
    """Directories holding the CUDA headers NVRTC needs, found through ``cuda.pathfinder`` or CUDA_HOME.

    ``cudart``'s directory has ``cuda_fp16.h`` and ``cuda_bf16.h``; ``cccl``'s has ``cuda/std``. Missing
    ones are left out: the kernels only need the first, and NVRTC bundles a minimal set of its own.
    """
    dirs: list[str] = []
    try:
        from cuda.pathfinder import find_nvidia_header_directory
    except ImportError:  # pragma: no cover - cuda-pathfinder is a dependency
        find_nvidia_header_directory = None
    for lib in ("cudart", "cccl"):
        found = None
        if find_nvidia_header_directory is not None:
            try:
                found = find_nvidia_header_directory(lib)
            except Exception:  # unsupported name on an older pathfinder, or not installed
                found = None
        if found and found not in dirs:
            dirs.append(str(found))
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home:
        for sub in ("include", "include/cccl"):
            d = Path(home) / sub
            if d.is_dir() and str(d) not in dirs:
                dirs.append(str(d))
    return tuple(dirs)


# -- architectures and versions --------------------------------------------------------------------------


def arch_for_capability(major: int, minor: int) -> str:
    """NVRTC's name of the exact architecture of compute capability ``major.minor``.

    Hopper (9.0) and the datacenter Blackwells (10.x) get the ``a`` suffix: their arch-specific features
    (wgmma, TMA multicast, setmaxnreg) exist only in code compiled for exactly that architecture.
    """
    arch = f"sm_{major}{minor}"
    return arch + "a" if major in (9, 10) else arch


def device_arch(device: Any = None) -> str:
    """The exact architecture of a CUDA device (torch's current one by default)."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return arch_for_capability(major, minor)


def check_arch(arch: str) -> str:
    if not re.fullmatch(r"sm_\d{2,3}[af]?", arch):
        raise ValueError(f"arch must name a real architecture such as 'sm_80' or 'sm_90a', got {arch!r}")
    return arch


@functools.cache
def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the NVRTC library that compiles (part of the cache key)."""
    from cuda.bindings import nvrtc

    err, major, minor = nvrtc.nvrtcVersion()
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:  # pragma: no cover
        raise RuntimeError(f"nvrtcVersion failed: {err}")
    return int(major), int(minor)


def _cuda_core_version() -> str:
    try:
        import cuda.core

        return str(getattr(cuda.core, "__version__", "?"))
    except ImportError:  # pragma: no cover
        return "?"


# -- compile options and cache keys ----------------------------------------------------------------------


def normalise_defines(defines: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """Macro definitions as sorted ``(name, value)`` string pairs (so their order never changes a key)."""
    out = []
    for name, value in sorted((defines or {}).items()):
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(f"bad macro name {name!r}")
        if isinstance(value, bool):
            value = int(value)
        out.append((name, str(value)))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class CompileOptions:
    """What, besides the source, changes the cubin. Hashable and part of the cache key."""

    arch: str
    defines: tuple[tuple[str, str], ...] = ()
    fast_math: bool = False
    lineinfo: bool = False
    max_registers: int | None = None

    def to_program_options(self, name: str, verbose: bool = True):
        """The ``cuda.core.ProgramOptions`` these stand for (``verbose``: ptxas resource usage in the log)."""
        from .nvrtc import ProgramOptions

        return ProgramOptions(
            name=name,
            arch=self.arch,
            std=STD,
            include_path=list(include_dirs()) or None,
            define_macro=list(self.defines) or None,
            use_fast_math=self.fast_math or None,
            lineinfo=self.lineinfo or None,
            max_register_count=self.max_registers,
            ptxas_options=["-v"] if verbose else None,
        )


def cache_key(
    source: str, options: CompileOptions, name_expressions: Sequence[str], target: str = "cubin"
) -> str:
    """SHA-256 of everything that determines the compiled code.

    The source text, the options (arch included), the name expressions, the output kind, and the versions
    of NVRTC, cuda-core and this package: a new compiler or a new release never reads an old entry.
    """
    payload = {
        "source": hashlib.sha256(source.encode()).hexdigest(),
        "options": dataclasses.asdict(options),
        "names": list(name_expressions),
        "target": target,
        "nvrtc": list(nvrtc_version()),
        "cuda_core": _cuda_core_version(),
        "attn_cuda": __version__,
        "include_dirs": list(include_dirs()),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_dir() -> Path | None:
    """Where compiled kernels are kept: ``$ATTN_CUDA_CACHE_DIR``, else ``$XDG_CACHE_HOME/attn-cuda``, else
    ``~/.cache/attn-cuda``. ``ATTN_CUDA_CACHE=0`` turns the disk cache off (``None``)."""
    if os.environ.get("ATTN_CUDA_CACHE", "1") == "0":
        return None
    explicit = os.environ.get("ATTN_CUDA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "attn-cuda"


# On-disk format: magic, header length, JSON header (symbol mapping, log), code bytes. One file per entry,
# so one os.replace publishes it whole.
_MAGIC = b"ATTNCU01"


def _encode_entry(module: CompiledModule) -> bytes:
    header = json.dumps({"symbols": module.symbols, "log": module.log, "arch": module.arch}).encode()
    return _MAGIC + struct.pack("<Q", len(header)) + header + module.code


def _decode_entry(blob: bytes, name: str) -> CompiledModule | None:
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 8:
        return None
    (n,) = struct.unpack_from("<Q", blob, len(_MAGIC))
    start = len(_MAGIC) + 8
    try:
        header = json.loads(blob[start : start + n])
    except ValueError:
        return None
    code = blob[start + n :]
    if not code:
        return None
    return CompiledModule(
        name=name, arch=header["arch"], code=code, symbols=header["symbols"], log=header["log"]
    )


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows within one filesystem
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- compiled modules ------------------------------------------------------------------------------------


@dataclasses.dataclass
class CompiledModule:
    """A compiled program: its code (cubin or PTX), the mangled name of each name expression, NVRTC's log."""

    name: str
    arch: str
    code: bytes
    symbols: dict[str, str]
    log: str = ""
    _object_code: Any = dataclasses.field(default=None, repr=False, compare=False)
    _kernels: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def mangled(self, kernel: str) -> str:
        """The symbol of ``kernel``: a name expression's mangled name, or an ``extern "C"`` name as is."""
        return self.symbols.get(kernel, kernel)

    def resource_usage(self) -> dict[str, dict[str, int]]:
        """ptxas's report per kernel: registers, spill bytes, static shared memory (from the -v log)."""
        return parse_ptxas_log(self.log, self.symbols)

    def kernel(self, name: str):
        """The loaded ``cuda.core.Kernel`` (loading needs a GPU; done once per module and kernel)."""
        if name not in self._kernels:
            from .nvrtc import ObjectCode

            if self._object_code is None:
                # Mangled names as bytes, the way NVRTC hands them out: cuda-core 1.2.0 passes a mapped
                # name to the driver as is and refuses str there (1.2.2 accepts both).
                self._object_code = ObjectCode.from_cubin(
                    self.code, name=self.name, symbol_mapping={k: v.encode() for k, v in self.symbols.items()}
                )
            self._kernels[name] = self._object_code.get_kernel(name)
        return self._kernels[name]


def parse_ptxas_log(log: str, symbols: dict[str, str] | None = None) -> dict[str, dict[str, int]]:
    """Registers, spills and shared memory per kernel from ``ptxas -v`` output, keyed by readable name."""
    readable = {v: k for k, v in (symbols or {}).items()}
    usage: dict[str, dict[str, int]] = {}
    current = None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            current = readable.get(m.group(1), m.group(1))
            usage[current] = {"registers": 0, "spill_stores": 0, "spill_loads": 0, "smem": 0, "stack": 0}
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            usage[current].update(
                stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3))
            )
        m = re.search(r"Used (\d+) registers", line)
        if m:
            usage[current]["registers"] = int(m.group(1))
        m = re.search(r"(\d+) bytes smem", line)
        if m:
            usage[current]["smem"] = int(m.group(1))
    return usage


_memory_cache: dict[str, CompiledModule] = {}
_lock = threading.Lock()


def clear_memory_cache() -> None:
    _memory_cache.clear()
    _package_modules.clear()


#: (file, name expressions, arch) -> module of this package's own kernels. Their sources do not change
#: while the process runs, so a launch skips re-reading, re-inlining and re-hashing them: on the H200 that
#: host work (about 0.1 ms) showed up in short kernels' event timings (vector add at 2^24: 1006 GB/s).
_package_modules: dict[tuple[str, tuple[str, ...], str], CompiledModule] = {}


def package_module(filename: str, names: Iterable[str] = (), arch: str | None = None) -> CompiledModule:
    """The compiled module of ``kernels/<filename>`` with these name expressions (compiled once per process,
    then served from memory; the disk cache still spares recompiling across processes)."""
    key = (filename, tuple(names), arch or device_arch())
    module = _package_modules.get(key)
    if module is None:
        module = compile_source(kernel_source(filename), name=filename, arch=key[2], name_expressions=key[1])
        _package_modules[key] = module
    return module


def compile_source(
    source: str,
    *,
    name: str,
    arch: str,
    name_expressions: Iterable[str] = (),
    defines: dict[str, Any] | None = None,
    fast_math: bool = False,
    lineinfo: bool = False,
    max_registers: int | None = None,
    target: str = "cubin",
    use_cache: bool = True,
) -> CompiledModule:
    """Compile CUDA C++ ``source`` with NVRTC; cached in memory and on disk unless ``use_cache=False``.

    ``name`` is the program's name in messages (the ``.cu`` file). ``target`` is ``"cubin"`` or ``"ptx"``.
    Raises :class:`KernelCompileError` carrying NVRTC's log.
    """
    arch = check_arch(arch)
    if target not in ("cubin", "ptx"):
        raise ValueError(f"target must be 'cubin' or 'ptx', got {target!r}")
    names = tuple(name_expressions)
    options = CompileOptions(arch, normalise_defines(defines), fast_math, lineinfo, max_registers)
    key = cache_key(source, options, names, target)
    if use_cache:
        hit = _memory_cache.get(key)
        if hit is not None:
            return hit
        directory = cache_dir()
        if directory is not None:
            path = directory / f"{key}.{target}"
            try:
                module = _decode_entry(path.read_bytes(), name)
            except OSError:
                module = None
            if module is not None:
                _memory_cache[key] = module
                return module
    module = _compile_uncached(source, name, options, names, target)
    if use_cache:
        with _lock:
            _memory_cache[key] = module
        directory = cache_dir()
        if directory is not None:
            with contextlib.suppress(OSError):  # a read-only home must not break compiling
                atomic_write(directory / f"{key}.{target}", _encode_entry(module))
    return module


class _Log:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text) -> None:
        self.parts.append(text.decode() if isinstance(text, bytes) else str(text))

    def getvalue(self) -> str:
        return "".join(self.parts)


def _compile_uncached(source, name, options: CompileOptions, names, target) -> CompiledModule:
    from .nvrtc import Program

    log = _Log()
    what = f"{name} ({', '.join(names)})" if names else name
    if target == "ptx":  # cuda.core's PTX path asks the driver for its version; NVRTC itself needs none
        return _compile_ptx(source, name, options, names, what)
    try:
        program = Program(source, "c++", options.to_program_options(name))
        obj = program.compile(target, name_expressions=names, logs=log)
    except Exception as exc:  # NVRTCError and friends: re-raise with our context, NVRTC's log included
        detail = log.getvalue() or str(exc)
        raise KernelCompileError(
            f"NVRTC failed to compile {what} for {options.arch} (defines {dict(options.defines)}):\n{detail}"
        ) from exc
    symbols = {
        n: (s.decode() if isinstance(s, bytes) else str(s)) for n, s in (obj.symbol_mapping or {}).items()
    }
    return CompiledModule(
        name=name, arch=options.arch, code=bytes(obj.code), symbols=symbols, log=log.getvalue()
    )


def _compile_ptx(source, name, options: CompileOptions, names, what) -> CompiledModule:
    """PTX straight from NVRTC through cuda.bindings (works on a machine without a driver)."""
    from cuda.bindings import nvrtc

    def check(result, step):
        err = result[0]
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise KernelCompileError(f"NVRTC {step} failed for {what} ({options.arch}): {err}")
        return result[1:]

    (prog,) = check(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []), "create")
    try:
        for n in names:
            check(nvrtc.nvrtcAddNameExpression(prog, n.encode()), "add name expression")
        opts = [
            f"--gpu-architecture={options.arch.replace('sm_', 'compute_')}".encode(),
            f"--std={STD}".encode(),
        ]
        opts += [f"-I{d}".encode() for d in include_dirs()]
        opts += [f"-D{k}={v}".encode() for k, v in options.defines]
        if options.fast_math:
            opts.append(b"--use_fast_math")
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        (size,) = check(nvrtc.nvrtcGetProgramLogSize(prog), "log size")
        buf = b" " * size
        check(nvrtc.nvrtcGetProgramLog(prog, buf), "log")
        log = buf.decode(errors="replace").rstrip("\x00")
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise KernelCompileError(f"NVRTC failed to compile {what} for {options.arch}:\n{log}")
        (size,) = check(nvrtc.nvrtcGetPTXSize(prog), "PTX size")
        ptx = b" " * size
        check(nvrtc.nvrtcGetPTX(prog, ptx), "PTX")
        symbols = {}
        for n in names:
            (lowered,) = check(nvrtc.nvrtcGetLoweredName(prog, n.encode()), "lowered name")
            symbols[n] = lowered.decode() if isinstance(lowered, bytes) else str(lowered)
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    return CompiledModule(name=name, arch=options.arch, code=ptx.rstrip(b"\x00"), symbols=symbols, log=log)


def compile_file(filename: str, *, arch: str | None = None, **kwargs: Any) -> CompiledModule:
    """Compile ``kernels/<filename>`` for ``arch`` (default: the current device's exact architecture)."""
    return compile_source(kernel_source(filename), name=filename, arch=arch or device_arch(), **kwargs)


# -- launching -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Launch:
    """A checked launch configuration: grid and block as 3-tuples, dynamic shared memory in bytes."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    smem: int = 0

    @property
    def threads(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]


def _dim3(value, what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, int) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, int) for d in dims):
        raise KernelLaunchError(f"{what} must be an int or 1 to 3 ints, got {value!r}")
    return (*dims, *(1,) * (3 - len(dims)))  # type: ignore[return-value]


def launch_config(grid, block, smem: int = 0, *, max_smem: int | None = None) -> Launch:
    """Validate a launch the way the driver would, with a message that says what is wrong.

    ``max_smem`` is the device's opt-in shared memory per block (227 KB on Hopper, 163 KB on A100).
    """
    g, b = _dim3(grid, "grid"), _dim3(block, "block")
    if min(b) < 1 or b[0] * b[1] * b[2] > 1024 or b[2] > 64:
        raise KernelLaunchError(f"block {b} must have 1..1024 threads (and z <= 64)")
    if min(g) < 0 or g[0] > 2**31 - 1 or g[1] > 65535 or g[2] > 65535:
        raise KernelLaunchError(f"grid {g} out of range (x < 2^31, y and z <= 65535)")
    if smem < 0:
        raise KernelLaunchError(f"dynamic shared memory must be >= 0 bytes, got {smem}")
    if max_smem is not None and smem > max_smem:
        raise KernelLaunchError(
            f"kernel asks for {smem} bytes of dynamic shared memory; the device allows {max_smem} per block"
        )
    return Launch(g, b, smem)


def kernel_args(args: Sequence[Any]) -> tuple[Any, ...]:
    """Arguments as ``cuda.core.launch`` takes them: tensors become device pointers, None a null pointer.

    Scalars must carry their C type (``ctypes.c_int32``, ``ctypes.c_float``...): a bare Python int would be
    passed as a 64-bit pointer and a bare float as a double, silently misaligning the parameter buffer.
    """
    import torch

    out: list[Any] = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            if a.device.type != "cuda":
                raise KernelLaunchError(f"argument {i} is a tensor on {a.device}; kernels need CUDA tensors")
            out.append(int(a.data_ptr()))
        elif a is None:
            out.append(0)
        elif isinstance(
            a, (ctypes.c_int32, ctypes.c_uint32, ctypes.c_int64, ctypes.c_uint64, ctypes.c_float)
        ):
            out.append(a)
        else:
            raise KernelLaunchError(
                f"argument {i} is a {type(a).__name__}; pass tensors, None, or ctypes scalars (c_int32, c_float...)"
            )
    return tuple(out)


def i32(x: int) -> ctypes.c_int32:
    if not -(2**31) <= int(x) < 2**31:
        raise KernelLaunchError(f"{x} does not fit in int32")
    return ctypes.c_int32(int(x))


def i64(x: int) -> ctypes.c_int64:
    return ctypes.c_int64(int(x))


def f32(x: float) -> ctypes.c_float:
    return ctypes.c_float(float(x))


class _TorchStream:
    """The ``__cuda_stream__`` protocol over a raw stream handle (``cuda.core`` wraps it without owning it)."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __cuda_stream__(self):
        return (0, self.handle)


@functools.cache
def _device(index: int):
    from .nvrtc import Device

    dev = Device(index)
    dev.set_current()
    return dev


@functools.cache
def max_dynamic_smem(index: int) -> int:
    """Opt-in shared memory per block of device ``index`` (bytes)."""
    import torch

    props = torch.cuda.get_device_properties(index)
    return int(getattr(props, "shared_memory_per_block_optin", DEFAULT_SMEM_LIMIT))


_smem_set: dict[tuple[int, int], int] = {}


def _allow_dynamic_smem(kernel, smem: int, device_index: int) -> None:
    """Opt a kernel into more than 48 KB of dynamic shared memory (once per kernel and size)."""
    key = (id(kernel), device_index)
    if smem <= DEFAULT_SMEM_LIMIT or _smem_set.get(key, 0) >= smem:
        return
    from cuda.bindings import driver

    attr = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    handle = kernel.handle
    if isinstance(handle, driver.CUkernel):  # cuda.core >= 0.3 loads through the library API
        (err,) = driver.cuKernelSetAttribute(attr, smem, handle, device_index)
    else:
        (err,) = driver.cuFuncSetAttribute(handle, attr, smem)
    if err != driver.CUresult.CUDA_SUCCESS:
        raise KernelLaunchError(f"could not allow {smem} bytes of dynamic shared memory: {err}")
    _smem_set[key] = smem


#: Kernels launched while :func:`record_launches` is active (None: not recording).
_launch_log: list[str] | None = None


@contextlib.contextmanager
def record_launches():
    """Collect the name of every kernel :func:`launch` starts inside the ``with`` block (in order, with
    repeats): ``tools/sanitize.py`` uses it to list the kernels compute-sanitizer has checked."""
    global _launch_log
    previous, _launch_log = _launch_log, []
    try:
        yield _launch_log
    finally:
        _launch_log = previous


def launch(
    module: CompiledModule, kernel: str, grid, block, args: Sequence[Any], *, smem: int = 0, stream=None
):
    """Launch ``kernel`` of ``module`` on the device of its tensor arguments (torch's current one if it has
    none), on ``stream`` (default: torch's current stream of that device)."""
    import torch

    if _launch_log is not None:
        _launch_log.append(kernel)

    from attn_reference.capability import device_guard

    from .nvrtc import LaunchConfig
    from .nvrtc import launch as core_launch

    with device_guard(*args):  # tensors on another GPU than the current one: launch there, not here
        index = torch.cuda.current_device()
        _device(index)
        cfg = launch_config(grid, block, smem, max_smem=max_dynamic_smem(index))
        k = module.kernel(kernel)
        _allow_dynamic_smem(k, cfg.smem, index)
        raw = (stream or torch.cuda.current_stream(index)).cuda_stream
        core_launch(
            _TorchStream(raw),
            LaunchConfig(grid=cfg.grid, block=cfg.block, shmem_size=cfg.smem),
            k,
            *kernel_args(args),
        )


# -- disassembly (host tools, no GPU) --------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """Path of a CUDA host tool (``nvdisasm``, ``cuobjdump``, ``ptxas``, ``compute-sanitizer``) or None.

    Looked for in ``$CUDA_HOME/bin``, on PATH, through ``cuda.pathfinder``, and in Triton's bundled
    binaries (Triton ships ``ptxas``, ``cuobjdump`` and ``nvdisasm`` with every Linux wheel).
    """
    import shutil

    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [Path(home) / "bin" / name] if home else []
    candidates.append(Path("/usr/local/cuda/bin") / name)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which(name)
    if found:
        return found
    try:
        from cuda.pathfinder import find_nvidia_binary_utility

        found = find_nvidia_binary_utility(name)
        if found:
            return str(found)
    except Exception:
        pass
    try:
        import importlib.util

        spec = importlib.util.find_spec("triton")
        if spec and spec.origin:
            p = Path(spec.origin).parent / "backends" / "nvidia" / "bin" / name
            if p.is_file():
                return str(p)
    except Exception:
        pass
    return None


def disassemble(cubin: bytes) -> str:
    """SASS of a cubin through ``nvdisasm`` (raises FileNotFoundError when no disassembler is found)."""
    import subprocess

    tool = find_tool("nvdisasm")
    if tool is None:
        raise FileNotFoundError("nvdisasm not found (CUDA_HOME/bin, PATH, cuda.pathfinder, triton)")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        res = subprocess.run([tool, f.name], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"nvdisasm failed: {res.stderr}")
    return res.stdout
