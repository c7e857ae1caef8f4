"""Host logic of the runtime layer, on the CPU: sources, headers, cache keys and files, errors, launches."""

import ctypes
import multiprocessing
import os

import pytest
import torch

from attn_cuda import runtime as rt

TINY = 'extern "C" __global__ void tiny(float* x) { x[threadIdx.x] = 1.0f; }'
TEMPLATED = "template <int N> __global__ void fill(float* x) { x[threadIdx.x] = N; }"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTN_CUDA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ATTN_CUDA_CACHE", raising=False)
    rt.clear_memory_cache()
    yield
    rt.clear_memory_cache()


def test_kernel_sources_ship_and_inline_local_headers():
    files = rt.kernel_files()
    assert {"flash_fwd.cu", "flash_bwd.cu", "matmul.cu", "reduction.cu"} <= set(files)
    src = rt.kernel_source("flash_fwd.cu")
    assert "begin common.cuh" in src and "mma_16816" in src
    assert '#include "common.cuh"' not in src


def test_missing_source_names_what_exists():
    with pytest.raises(FileNotFoundError, match=r"flash_fwd\.cu"):
        rt.kernel_source("nope.cu")


def test_headers_are_found():
    dirs = rt.include_dirs()
    assert any(os.path.isfile(os.path.join(d, "cuda_fp16.h")) for d in dirs), dirs


@pytest.mark.parametrize(
    ("cap", "arch"),
    [
        ((8, 0), "sm_80"),
        ((8, 6), "sm_86"),
        ((8, 9), "sm_89"),
        ((9, 0), "sm_90a"),
        ((10, 0), "sm_100a"),
        ((12, 0), "sm_120"),
    ],
)
def test_exact_arch_of_a_capability(cap, arch):
    assert rt.arch_for_capability(*cap) == arch


@pytest.mark.parametrize("bad", ["compute_90", "sm90", "sm_9", "90a", ""])
def test_virtual_or_malformed_arch_is_refused(bad):
    with pytest.raises(ValueError, match="arch"):
        rt.check_arch(bad)


def test_cache_key_changes_with_everything_that_changes_the_code():
    base = rt.CompileOptions("sm_80")
    key = rt.cache_key(TINY, base, ())
    assert key == rt.cache_key(TINY, rt.CompileOptions("sm_80"), ())  # stable
    others = [
        rt.cache_key(TINY + " ", base, ()),
        rt.cache_key(TINY, rt.CompileOptions("sm_90a"), ()),
        rt.cache_key(TINY, rt.CompileOptions("sm_80", rt.normalise_defines({"X": 1})), ()),
        rt.cache_key(TINY, rt.CompileOptions("sm_80", fast_math=True), ()),
        rt.cache_key(TINY, base, ("fill<1>",)),
        rt.cache_key(TINY, base, (), target="ptx"),
    ]
    assert len({key, *others}) == len(others) + 1


def test_cache_key_covers_compiler_and_package_versions(monkeypatch):
    key = rt.cache_key(TINY, rt.CompileOptions("sm_80"), ())
    monkeypatch.setattr(rt, "__version__", "999")
    assert rt.cache_key(TINY, rt.CompileOptions("sm_80"), ()) != key
    monkeypatch.undo()
    monkeypatch.setattr(rt, "nvrtc_version", lambda: (99, 9))
    assert rt.cache_key(TINY, rt.CompileOptions("sm_80"), ()) != key


def test_define_order_does_not_matter_and_names_are_checked():
    assert rt.normalise_defines({"B": 2, "A": True}) == (("A", "1"), ("B", "2"))
    with pytest.raises(ValueError, match="macro"):
        rt.normalise_defines({"1X": 0})


def test_compile_caches_in_memory_and_on_disk(tmp_path):
    a = rt.compile_source(TEMPLATED, name="fill.cu", arch="sm_80", name_expressions=["fill<3>"])
    assert a.code[:4] == b"\x7fELF" and a.symbols["fill<3>"].startswith("_Z")
    assert rt.compile_source(TEMPLATED, name="fill.cu", arch="sm_80", name_expressions=["fill<3>"]) is a
    files = list((tmp_path / "cache").glob("*.cubin"))
    assert len(files) == 1
    rt.clear_memory_cache()
    b = rt.compile_source(TEMPLATED, name="fill.cu", arch="sm_80", name_expressions=["fill<3>"])
    assert b is not a and b.code == a.code and b.symbols == a.symbols  # read back from disk
    assert "fill<3>" in b.resource_usage()


def test_corrupt_cache_entry_is_recompiled(tmp_path):
    rt.compile_source(TINY, name="tiny.cu", arch="sm_80")
    (path,) = (tmp_path / "cache").glob("*.cubin")
    path.write_bytes(b"garbage")
    rt.clear_memory_cache()
    assert rt.compile_source(TINY, name="tiny.cu", arch="sm_80").code[:4] == b"\x7fELF"


def test_disk_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTN_CUDA_CACHE", "0")
    assert rt.cache_dir() is None
    rt.compile_source(TINY, name="tiny.cu", arch="sm_80")
    assert not (tmp_path / "cache").exists()


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "d" / "entry.bin"
    rt.atomic_write(target, b"one")
    rt.atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["entry.bin"]


def _compile_in_child(cache: str) -> bytes:
    os.environ["ATTN_CUDA_CACHE_DIR"] = cache
    from attn_cuda import runtime

    return runtime.compile_source(TEMPLATED, name="fill.cu", arch="sm_80", name_expressions=["fill<7>"]).code


def test_two_processes_compiling_at_once_agree(tmp_path):
    cache = str(tmp_path / "shared")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        codes = pool.map(_compile_in_child, [cache, cache])
    assert codes[0] == codes[1]
    entries = os.listdir(cache)
    assert len(entries) == 1 and entries[0].endswith(".cubin")  # no torn or temporary files left


def test_compile_error_names_the_kernel_and_carries_the_log():
    bad = "template <int N> __global__ void broken(float* x) { x[0] = undefined_thing; }"
    with pytest.raises(
        rt.KernelCompileError, match=r"(?s)broken\.cu \(broken<1>\) for sm_80.*undefined_thing"
    ):
        rt.compile_source(bad, name="broken.cu", arch="sm_80", name_expressions=["broken<1>"])


def test_ptxas_log_parsing():
    log = (
        "ptxas info    : Compiling entry function '_Z4fillILi3EEvPf' for 'sm_80'\n"
        "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
        "ptxas info    : Used 255 registers, used 1 barriers, 1024 bytes smem, 360 bytes cmem[0]\n"
    )
    usage = rt.parse_ptxas_log(log, {"fill<3>": "_Z4fillILi3EEvPf"})
    assert usage == {
        "fill<3>": {"registers": 255, "spill_stores": 4, "spill_loads": 4, "smem": 1024, "stack": 8}
    }


def test_launch_config_is_validated_with_clear_messages():
    cfg = rt.launch_config((10, 2), 128, 100 * 1024, max_smem=227 * 1024)
    assert cfg.grid == (10, 2, 1) and cfg.block == (128, 1, 1) and cfg.threads == 128
    with pytest.raises(rt.KernelLaunchError, match="1024 threads"):
        rt.launch_config(1, (32, 33))
    with pytest.raises(rt.KernelLaunchError, match="grid"):
        rt.launch_config((1, 70000), 32)
    with pytest.raises(rt.KernelLaunchError, match=r"236544 bytes.*allows 232448"):
        rt.launch_config(1, 32, 227 * 1024 + 4096, max_smem=227 * 1024)
    with pytest.raises(rt.KernelLaunchError, match="grid"):
        rt.launch_config("x", 32)


def test_kernel_arguments_must_be_typed():
    args = rt.kernel_args([None, rt.i32(3), rt.f32(0.5), rt.i64(2**40)])
    assert args[0] == 0 and isinstance(args[1], ctypes.c_int32) and isinstance(args[2], ctypes.c_float)
    with pytest.raises(rt.KernelLaunchError, match="ctypes"):
        rt.kernel_args([3])  # would be passed as a 64-bit pointer
    with pytest.raises(rt.KernelLaunchError, match="ctypes"):
        rt.kernel_args([0.5])  # would be passed as a double
    with pytest.raises(rt.KernelLaunchError, match="CUDA tensors"):
        rt.kernel_args([torch.zeros(2)])
    with pytest.raises(rt.KernelLaunchError, match="int32"):
        rt.i32(2**31)


def test_host_tools_are_found_or_reported():
    tool = rt.find_tool("nvdisasm")
    if tool is None:
        pytest.skip("no nvdisasm here (CUDA_HOME, PATH, cuda.pathfinder, triton)")
    assert os.access(tool, os.X_OK)


def test_package_modules_are_read_hashed_and_compiled_once_per_process(monkeypatch):
    """A launch must not redo host work per call (re-reading and re-hashing sources cost ~0.1 ms)."""
    calls = {"source": 0, "compile": 0}
    source, compile_source = rt.kernel_source, rt.compile_source

    def counting_source(name):
        calls["source"] += 1
        return source(name)

    def counting_compile(*a, **kw):
        calls["compile"] += 1
        return compile_source(*a, **kw)

    monkeypatch.setattr(rt, "kernel_source", counting_source)
    monkeypatch.setattr(rt, "compile_source", counting_compile)
    first = rt.package_module("vector_add.cu", ("vector_add<float>",), "sm_80")
    for _ in range(3):
        assert rt.package_module("vector_add.cu", ("vector_add<float>",), "sm_80") is first
    assert calls == {"source": 1, "compile": 1}
    assert rt.package_module("vector_add.cu", ("vector_add<float>",), "sm_90a") is not first
    rt.clear_memory_cache()
    rt.package_module("vector_add.cu", ("vector_add<float>",), "sm_80")
    assert calls == {"source": 3, "compile": 3}
