"""The CuTe DSL Hopper kernel compiles for sm_90a without a GPU, to TMA copies and wgmma instructions."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from attn_flashmla.decode_fwd_sm90 import cute_supports

# name: (causal, watchdog, warpgroups per CTA, split S, seesaw, h_q with one KV head, cross_first, lean,
# fp16 instead of bf16)
VARIANTS = {
    "noncausal": (False, False, 1, False, False, 16, False, False, False),
    "causal": (True, False, 1, False, False, 16, False, False, False),
    "watchdog": (False, True, 1, False, False, 16, False, False, False),
    "two_warpgroups": (True, False, 2, False, False, 16, False, False, False),
    "split_s": (True, False, 2, True, False, 16, False, False, False),
    "seesaw": (False, False, 3, False, True, 16, False, False, False),
    "seesaw_causal": (True, False, 3, False, True, 16, False, False, False),
    # two row blocks: a cluster of two CTAs
    "seesaw_pairs": (False, False, 3, False, True, 128, False, False, False),
    "seesaw_pairs_cross_first": (
        True,
        False,
        3,
        False,
        True,
        128,
        True,
        False,
        False,
    ),  # R's cross product first
    "seesaw_pairs_lean": (True, False, 3, False, True, 128, False, True, False),  # the lean softmax (default)
    "seesaw_pairs_causal_fp16": (
        True,
        False,
        3,
        False,
        True,
        128,
        False,
        True,
        True,
    ),  # f16, the default form
}
FIRST_KERNEL = [name for name, v in VARIANTS.items() if not v[4]]

# One interpreter compiles every variant (the DSL's import is most of a compile's cost); the DSL reads
# its environment (target arch, what to keep, where) at import, so it must be a fresh one.
COMPILE = textwrap.dedent(
    """
    import pathlib, sys, time, torch
    start = time.perf_counter()
    from attn_flashmla import decode_fwd_sm90 as m
    m._cute()
    print(f"import of the CuTe DSL: {time.perf_counter() - start:.1f} s")
    dump = pathlib.Path(sys.argv[1])
    args = [sys.argv[i::10] for i in range(2, 12)]
    for name, causal, watchdog, wgs, split, seesaw, h_q, cross, lean, fp16 in zip(*args):
        dtype = torch.float16 if fp16 == "1" else torch.bfloat16
        flags = dict(
            causal=causal == "1", watchdog=watchdog == "1", warpgroups=int(wgs), split_s=split == "1",
            seesaw=seesaw == "1",
        )
        m.compile_for_sm90(dtype, **flags, h_q=int(h_q), cross_first=cross == "1", lean=lean == "1")
        key = m.kernel_key(
            dtype, *flags.values(), cluster=m.seesaw_cluster(-(-int(h_q) // 64)), cross_first=cross == "1",
            lean=lean == "1",
        )
        (dump / name).mkdir()
        for ptx in dump.glob("*.ptx"):
            ptx.rename(dump / name / ptx.name)
        print(f"compiled {name}: {m.COMPILE_SECONDS[key]:.1f} s")
    """
)

needs_cute_dsl = pytest.mark.skipif(
    importlib.util.find_spec("cutlass") is None,
    reason="the CuTe DSL (nvidia-cutlass-dsl, the sm90 extra) is not installed",
)


@pytest.fixture(scope="module")
def sm90a_ptx(tmp_path_factory) -> dict[str, str]:
    """The PTX of every variant, compiled for sm_90a from CPU tensors in one subprocess."""
    dump = tmp_path_factory.mktemp("cute_ptx")
    env = {
        **os.environ,
        "CUTE_DSL_ARCH": "sm_90a",
        "CUTE_DSL_KEEP": "ptx",
        "CUTE_DSL_DUMP_DIR": str(dump),
        "CUTE_DSL_NO_CACHE": "1",
    }
    argv = [str(dump)]
    for name, flags in VARIANTS.items():
        argv += [name, *(str(int(f)) for f in flags)]
    result = subprocess.run(
        [sys.executable, "-c", COMPILE, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # The compile times, for the record (pytest -s shows them; gpu_check prints the GPU's own).
    print(result.stdout.strip())
    out = {}
    for name in VARIANTS:
        files = list((dump / name).glob("*.ptx"))
        assert files, f"no PTX dumped for {name}: {result.stdout}"
        out[name] = files[0].read_text()
    return out


@needs_cute_dsl
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_kernel_assembles_without_spills_or_serialised_wgmma(
    sm90a_ptx: dict[str, str], variant: str, tmp_path
):
    """ptxas -v for sm_90a: no spills (254 registers at 2026-12-03; the seesaw kernel's consumers get 240
    through setmaxnreg) and no wgmma made to wait. The
    watchdog build (a debugging aid, never the default) reports hangs through a function call, across
    which ptxas must serialise the wgmma pipeline (C7510): accepted there only."""
    from attn_reference.testing import ptxas

    if ptxas.find_ptxas() is None:
        pytest.skip("no CUDA 13 ptxas (PATH, or torch's bin/)")
    allow = ("C7510",) if variant == "watchdog" else ()
    ptxas.assert_no_spills_or_serialised_wgmma(sm90a_ptx[variant], tmp_path, allow=allow)


@needs_cute_dsl
@pytest.mark.parametrize("variant", FIRST_KERNEL)
def test_kernel_compiles_for_sm90a_to_tma_and_wgmma(sm90a_ptx: dict[str, str], variant: str):
    ptx = sm90a_ptx[variant]
    _, watchdog, wgs, split, _, _, _, _, _ = VARIANTS[variant]
    assert ".target sm_90a" in ptx
    # S = Q K^T: 36 k-steps of m64n64k16 (d = 576; split S: m64n32k16, 32 of the tile's tokens);
    # O += P V: 4 k-steps of m64n256k16 (split S: 2 with this warpgroup's P from registers, 2 with the
    # other's from shared memory).
    n = 32 if split else 64
    assert ptx.count(f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.bf16.bf16") == 36
    assert ptx.count("wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16") == 4
    # The split exchanges row maxima and P halves every tile and row sums once per piece, at one
    # 256-thread named barrier.
    assert len(re.findall(r"bar\.sync\s+3, 256;", ptx)) == (3 if split else 0)
    # TMA: Q (2-d tensor) and the paged K blocks (3-d: token, channel, KV head), completing on mbarriers.
    assert "cp.async.bulk.tensor.2d.shared::cta.global" in ptx
    assert "cp.async.bulk.tensor.3d.shared::cta.global" in ptx
    assert "mbarrier.try_wait" in ptx
    # The watchdog build bounds each wait by the global timer and exits; the normal build has neither.
    assert ("exit;" in ptx) == watchdog
    assert ("%globaltimer" in ptx) == watchdog
    # Two warpgroups release K stages through "empty" mbarriers (no CTA barrier per tile) and zero a
    # partial tile's V rows behind a named barrier of their own 128 threads.
    plain_arrives = [ln for ln in ptx.splitlines() if "mbarrier.arrive" in ln and "expect_tx" not in ln]
    assert bool(plain_arrives) == (wgs == 2)
    assert bool(re.search(r"bar(rier)?\.sync(\.aligned)?\s+%r\d+, 128;", ptx)) == (wgs == 2)


@needs_cute_dsl
@pytest.mark.parametrize("variant", [name for name, v in VARIANTS.items() if v[4]])
def test_seesaw_kernel_compiles_to_its_schedule(sm90a_ptx: dict[str, str], variant: str):
    """The seesaw kernel: each consumer computes the whole S of its tile (36 m64n64k16 each, none of
    m64n32), multiplies two tiles' P by its V half (4 m64n256k16 per tile), hands m_a, P1 and P0' over by
    one bar.arrive each, and gets its registers from the producer warpgroup by setmaxnreg. In pairs (two
    row blocks) the K boxes are multicast into the cluster and released on both CTAs' barriers."""
    from attn_flashmla.decode_fwd_sm90_seesaw import GROUPS

    ptx = sm90a_ptx[variant]
    assert ".target sm_90a" in ptx
    ab = "f16.f16" if VARIANTS[variant][8] else "bf16.bf16"
    assert ptx.count(f"wgmma.mma_async.sync.aligned.m64n64k16.f32.{ab}") == 2 * 36
    assert "m64n32k16" not in ptx
    assert ptx.count(f"wgmma.mma_async.sync.aligned.m64n256k16.f32.{ab}") == 2 * 2 * 4
    assert len(re.findall(r"bar\.arrive\s+[123], 256;", ptx)) == 3
    assert re.search(r"setmaxnreg\.dec\.sync\.aligned\.u32\s+24;", ptx)
    assert re.search(r"setmaxnreg\.inc\.sync\.aligned\.u32\s+240;", ptx)
    # Q in nine 64-channel boxes, and each of the two stages' groups box by box: 2 x 9 more.
    boxes = sum(n for _, n in GROUPS.values())
    assert ptx.count("cp.async.bulk.tensor.2d.shared::cta.global") == boxes
    pairs = VARIANTS[variant][5] == 128
    k_loads = (
        "cp.async.bulk.tensor.3d.shared::cluster.global"
        if pairs
        else "cp.async.bulk.tensor.3d.shared::cta.global"
    )
    assert ptx.count(k_loads) == 2 * boxes
    assert ("multicast::cluster" in ptx) == pairs
    assert ("barrier.cluster.wait" in ptx) == pairs
    # P crosses by stmatrix/ldmatrix only in the lean softmax (P1 stored by R, loaded and P0' stored by L).
    lean = VARIANTS[variant][7]
    assert ptx.count("stmatrix.sync.aligned") == (8 if lean else 0)
    assert ptx.count("ldmatrix.sync.aligned") == (4 if lean else 0)
    # A stage's group is released by one lane per consumer warp after its last read (plain arrives).
    assert any("mbarrier.arrive" in ln and "expect_tx" not in ln for ln in ptx.splitlines())


@needs_cute_dsl
def test_one_compile_serves_every_call_of_a_key(monkeypatch):
    """Host preparation twice, other shapes and lengths, same (dtype, causal): one compile, two launches."""
    from attn_flashmla import combine
    from attn_flashmla import decode_fwd_sm90 as m

    compiles, launches = [], []

    def fake_compile(key, args):
        compiles.append((key, args))
        return lambda *call_args: launches.append(call_args)

    monkeypatch.setattr(m, "_compile", fake_compile)
    monkeypatch.setattr(m, "_COMPILED", {})
    monkeypatch.setattr(m, "COMPILE_SECONDS", {})
    monkeypatch.setattr(combine, "combine_splits", lambda *a, **k: None)
    monkeypatch.delenv("ATTN_FLASHMLA_CUTE_WARPGROUPS", raising=False)  # the default: two
    monkeypatch.delenv("ATTN_FLASHMLA_CUTE_SPLIT_S", raising=False)  # the default with two: split S
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_SEESAW", "0")  # the first kernel (the seesaw's test is below)
    calls = [
        (m.example_inputs(torch.bfloat16, b=2, s_q=1, h_q=16, h_kv=1), False),
        (m.example_inputs(torch.bfloat16, b=5, s_q=2, h_q=64, h_kv=2), False),
        (m.example_inputs(torch.bfloat16, b=3, s_q=1, h_q=128, h_kv=1), True),  # s_q 1: causal is a no-op
    ]
    for (q, k, table, lens, parts, offsets, total, max_splits), causal in calls:
        m.dense_decode_cute(q, k, table, lens, parts, offsets, total, max_splits, 0.1, causal)
    first = m.KernelKey(torch.bfloat16, False, False, 2, True, False, 1, False)
    assert [key for key, _ in compiles] == [first]
    assert len(launches) == 3 and list(m.COMPILE_SECONDS) == [first]
    # The scalars differ per call (s_q, group, rows_pad, h_kv) ...
    assert [tuple(a[9:13]) for a in launches] == [(1, 16, 64, 1), (2, 32, 64, 2), (1, 128, 128, 1)]

    # ... and the tensors' types (what the compiled signature is made of) do not: every extent and stride
    # is dynamic, so no size can be baked into the kernel.
    def types(args):
        return [re.sub(r"0x[0-9a-f]+", "PTR", str(a)) for a in args[:8]]

    assert types(launches[0]) == types(launches[1]) == types(launches[2]) == types(compiles[0][1])
    assert all("?" in t for t in types(launches[0]))


@needs_cute_dsl
def test_seesaw_compiles_once_per_cluster_size(monkeypatch):
    """The seesaw kernel (the default): one compile per (dtype, causal, cluster size); the row blocks of a
    call choose the cluster (two when they pair up), every shape and length stays a runtime value."""
    from attn_flashmla import combine
    from attn_flashmla import decode_fwd_sm90 as m

    compiles = []
    monkeypatch.setattr(m, "_compile", lambda key, args: compiles.append(key) or (lambda *a: None))
    monkeypatch.setattr(m, "_COMPILED", {})
    monkeypatch.setattr(m, "COMPILE_SECONDS", {})
    monkeypatch.setattr(combine, "combine_splits", lambda *a, **k: None)
    for name in ("ATTN_FLASHMLA_CUTE_SEESAW", "ATTN_FLASHMLA_CUTE_CLUSTER", "ATTN_FLASHMLA_CUTE_LEAN"):
        monkeypatch.delenv(name, raising=False)
    for b, s_q, h_q, h_kv in ((2, 1, 16, 1), (5, 2, 64, 2), (3, 1, 128, 1), (2, 2, 128, 1), (4, 1, 192, 1)):
        q, k, table, lens, parts, offsets, total, max_splits = m.example_inputs(
            torch.bfloat16, b, s_q, h_q, h_kv
        )
        m.dense_decode_cute(q, k, table, lens, parts, offsets, total, max_splits, 0.1, False)
    # 1 row block, 1 (64 rows per KV head), 2, 4 (pairs), 3 (odd: single CTAs)
    assert compiles == [
        m.KernelKey(
            torch.bfloat16, False, False, 3, False, True, 1, False, True
        ),  # the lean softmax: default
        m.KernelKey(torch.bfloat16, False, False, 3, False, True, 2, False, True),
    ]
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_CLUSTER", "1")
    assert m.seesaw_cluster(2) == 1
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_CLUSTER", "4")
    with pytest.raises(ValueError, match="ATTN_FLASHMLA_CUTE_CLUSTER must be 1 or 2"):
        m.seesaw_cluster(2)


def test_launch_operands_are_copied_where_they_are_misaligned_or_strided():
    """What the CuTe launcher hands the DSL is assumed 16-byte aligned and contiguous: a block table of
    part of the batch (``block_table[1:]``: a row of 5 int32 is 20 bytes), a length vector at an odd
    offset and a pool sliced by blocks get fresh copies with the same values; aligned ones pass as they are."""
    from attn_flashmla.decode_fwd_sm90 import _aligned

    table = torch.arange(15, dtype=torch.int32).view(3, 5)
    lens = torch.tensor([7, 8, 9], dtype=torch.int32)
    pool = torch.randn(6, 64, 1, 576, dtype=torch.bfloat16)
    for t in (table[1:], lens[1:], pool[::2]):
        fixed = _aligned(t)
        assert fixed.is_contiguous() and fixed.data_ptr() % 16 == 0 and torch.equal(fixed, t)
        assert fixed.data_ptr() != t.data_ptr()
    for t in (table, lens, pool):
        assert _aligned(t) is t


def test_cute_supports_states_its_limits():
    q = torch.empty(1, 1, 16, 576, dtype=torch.bfloat16)
    assert cute_supports(q, 64) is None
    assert "page_block_size" in cute_supports(q, 16)
    assert "head dim" in cute_supports(q[..., :512], 64)
    assert "dtype" in cute_supports(q.float(), 64)
    assert cute_supports(q, 64, 0.1) is None
    for scale in (0.0, -0.1):  # row maxima of unscaled scores need a positive scale
        assert "softmax_scale must be > 0" in cute_supports(q, 64, scale)


# A condition or block that leaves one thread (or one lane of each warp or quad) running.
_ONE_THREAD = re.compile(r"tidx\s*==\s*0|%\s*(32|4)\s*==\s*0|lane\w*\s*==\s*0|elect_one")


def _tma_copy_guards(module) -> dict[str, list[str]]:
    """Each TMA ``cute.copy`` of ``module`` (a call with ``tma_bar_ptr=``), and each call of a method that
    issues one, mapped to the ``if`` tests and ``with`` items around it in its function."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(module))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def is_tma_copy(call) -> bool:
        return ast.unparse(call.func) == "cute.copy" and any(k.arg == "tma_bar_ptr" for k in call.keywords)

    def enclosing_function(node):
        while node in parents and not isinstance(node, ast.FunctionDef):
            node = parents[node]
        return node

    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    issuers = {enclosing_function(c).name for c in calls if is_tma_copy(c)}
    guards = {}
    for call in calls:
        func = ast.unparse(call.func)
        if not (is_tma_copy(call) or func.removeprefix("self.") in issuers - {"kernel"}):
            continue
        around, node = [], call
        while node in parents and not isinstance(node, ast.FunctionDef):
            node = parents[node]
            if isinstance(node, ast.If):
                around.append(ast.unparse(node.test))
            elif isinstance(node, ast.With):
                around += [ast.unparse(item.context_expr) for item in node.items]
        guards[f"{func} (line {call.lineno})"] = around
    return guards


@pytest.mark.parametrize("module_name", ["decode_fwd_sm90", "decode_fwd_sm90_seesaw"])
def test_tma_copies_are_issued_by_a_whole_warp(module_name):
    """A TMA ``cute.copy`` elects its issuing lane with ``elect.sync`` over the full warp, so it must not sit
    under a one-thread condition such as ``tidx == 0`` or inside ``elect_one()``, in its own function or
    around a call of a method that issues one: there lane 0 waits for lanes that are spinning on the
    barrier the copy should complete (the first-launch hang of 2026-11-22). Checked on the source, no GPU."""
    module = importlib.import_module(f"attn_flashmla.{module_name}")
    guards = _tma_copy_guards(module)
    copies = [site for site in guards if site.startswith("cute.copy")]
    # decode_fwd_sm90: Q, the K prologue, the K refill; seesaw: Q and the refill of a channel group
    assert len(copies) == {"decode_fwd_sm90": 3, "decode_fwd_sm90_seesaw": 2}[module_name], guards
    for site, around in guards.items():
        bad = [test for test in around if _ONE_THREAD.search(test)]
        assert not bad, f"{module_name}: {site} under {bad}"


def test_the_whole_warp_check_sees_a_copy_under_one_thread(tmp_path, monkeypatch):
    """The check above fails on a copy under ``tidx == 0``, one in ``elect_one()``, and a call of an
    issuing method under ``lane == 0``."""
    source = textwrap.dedent(
        """
        class K:
            def load(self, tma, bar):
                cute.copy(tma, 0, 1, tma_bar_ptr=bar)

            def kernel(self, tidx, lane, tma, bar):
                if tidx == 0:
                    cute.copy(tma, 0, 1, tma_bar_ptr=bar)
                with cute.arch.elect_one():
                    cute.copy(tma, 0, 1, tma_bar_ptr=bar)
                if lane == 0:
                    self.load(tma, bar)
        """
    )
    (tmp_path / "fake_tma_module.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    guards = _tma_copy_guards(importlib.import_module("fake_tma_module"))
    flagged = sorted(site for site, around in guards.items() if any(_ONE_THREAD.search(t) for t in around))
    assert len(flagged) == 3 and any(site.startswith("self.load") for site in flagged), guards


def test_cute_form_switches(monkeypatch):
    """The first kernel (ATTN_FLASHMLA_CUTE_SEESAW=0): two warpgroups and split S by default; split S only
    with two warpgroups."""
    from attn_flashmla import decode_fwd_sm90 as m

    for name in ("ATTN_FLASHMLA_CUTE_WARPGROUPS", "ATTN_FLASHMLA_CUTE_SPLIT_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_SEESAW", "0")
    assert m.warpgroups() == 2 and m.split_s()
    assert m.cute_config()["DV_SPLIT"] == 1 and m.cute_config()["num_warps"] == 8
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_SPLIT_S", "0")
    assert not m.split_s()
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_WARPGROUPS", "1")
    assert m.cute_config()["DV_SPLIT"] == 2 and not m.split_s()
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_SPLIT_S", "1")
    with pytest.raises(ValueError, match="needs two warpgroups"):
        m.split_s()
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_WARPGROUPS", "3")
    with pytest.raises(ValueError, match="must be 1 or 2"):
        m.warpgroups()


def test_seesaw_switch(monkeypatch):
    """The seesaw kernel is the default; it has one CTA per row block (both output halves) and one key per
    (dtype, causal, cluster size), whatever the first kernel's switches say."""
    from attn_flashmla import decode_fwd_sm90 as m

    monkeypatch.delenv("ATTN_FLASHMLA_CUTE_SEESAW", raising=False)
    assert m.seesaw()
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_SEESAW", "0")
    assert not m.seesaw()
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_SEESAW", "1")
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_WARPGROUPS", "1")
    assert m.seesaw() and m.cute_config()["DV_SPLIT"] == 1 and m.cute_config()["num_warps"] == 12
    assert m.kernel_key(torch.bfloat16, True, True, 1, True, seesaw=True) == m.kernel_key(
        torch.bfloat16, True, seesaw=True
    )
    # and the first kernel's key has no cluster or cross_first to speak of
    assert m.kernel_key(torch.bfloat16, True, cluster=2, cross_first=True) == m.kernel_key(
        torch.bfloat16, True
    )
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_CROSS_FIRST", "1")
    assert m.cross_first()
    monkeypatch.setenv("ATTN_FLASHMLA_CUTE_SEESAW", "yes")
    with pytest.raises(ValueError, match="ATTN_FLASHMLA_CUTE_SEESAW must be 0 or 1"):
        m.seesaw()


@pytest.mark.parametrize(
    ("b", "s_q", "h_q", "h_kv", "no_copy"),
    [
        (3, 1, 128, 1, True),
        (2, 2, 64, 1, True),
        (2, 1, 128, 2, True),
        (2, 2, 128, 2, False),
        (2, 1, 16, 1, False),
    ],
)
def test_q_goes_to_the_kernel_without_a_copy_where_its_rows_already_are_blocks(
    monkeypatch, b, s_q, h_q, h_kv, no_copy
):
    """The kernel reads q as (sequence, KV head, row) blocks of 64 rows. With one KV head, or one query
    token, a contiguous q already is that (no copy); otherwise it is regrouped and zero-padded. Either way
    the kernel sees the same rows."""
    from attn_flashmla import decode_fwd_sm90 as m

    monkeypatch.setattr(m, "_dyn", lambda t, leading_dim: t)
    monkeypatch.setattr(m, "_stream", lambda device: None)
    q, k, table, lens, parts, offsets, total, _ = m.example_inputs(torch.bfloat16, b, s_q, h_q, h_kv)
    q = torch.randn_like(q, dtype=torch.float32).to(torch.bfloat16)
    tensors, scalars, _, _ = m.prepare_inputs(q, k, table, lens, parts, offsets, total, 0.1)
    packed = tensors[0]
    assert (packed.data_ptr() == q.data_ptr()) == no_copy
    group, rows_pad = h_q // h_kv, scalars[3]
    rows = packed.view(b, h_kv, rows_pad, 576)
    for hk in range(h_kv):
        for s in range(s_q):
            expect = q[:, s, hk * group : (hk + 1) * group]
            assert torch.equal(rows[:, hk, s * group : (s + 1) * group], expect)
    assert not rows[:, :, s_q * group :].any()  # the padding rows are zeros
    # A contiguous view whose base is not 16-byte aligned (TMA's requirement) is copied.
    flat = torch.zeros(q.numel() + 1, dtype=q.dtype)
    shifted = flat[1:].view(q.shape)
    tensors, _, _, _ = m.prepare_inputs(shifted, k, table, lens, parts, offsets, total, 0.1)
    assert tensors[0].data_ptr() != shifted.data_ptr()


on_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.sm90
@on_gpu
@needs_cute_dsl
@pytest.mark.parametrize(
    ("s_q", "h_q", "causal", "dtype"),
    [
        (1, 128, False, torch.bfloat16),
        (2, 128, True, torch.float16),
        (4, 64, True, torch.bfloat16),
        (2, 64, False, torch.float16),
    ],
)
def test_lengths_at_tile_edges_match_the_reference(monkeypatch, s_q, h_q, causal, dtype):
    """The seesaw kernel masks only the tiles where some row's limit falls (the sequence end, or the causal
    diagonal of the block's first query token): lengths one short of, at and one past a tile's end, for
    each row block, in both dtypes, against the reference. The inputs are made for those lengths, so the slots past each
    end are NaN and the block-table entries past it garbage, as the masks must ignore."""
    from attn_reference import mla
    from attn_reference.testing.mla import assert_mla_close, assert_mla_lse_close, mla_decode_inputs

    monkeypatch.setenv("ATTN_FLASHMLA_PATH", "cute")
    lens = [1, 2, 3, 63, 64, 65, 66, 127, 128, 129, 130, 191, 192, 193, 255, 256, 257, 1000]
    inputs = mla_decode_inputs(
        len(lens),
        s_q,
        h_q,
        1,
        max(lens),
        dtype=dtype,
        device="cuda",
        causal=causal,
        seqlens=[max(n, s_q) for n in lens],
    )
    import attn_flashmla as flash_mla

    meta, _ = flash_mla.get_mla_metadata()
    out, lse = inputs.call(flash_mla.flash_mla_with_kvcache, meta)
    assert meta.path == "cute"
    ref_out, ref_lse = mla.flash_mla_with_kvcache(**inputs.kwargs())
    assert_mla_close("out", out, ref_out)
    assert_mla_lse_close("lse", lse, ref_lse)


@pytest.mark.sm90
@on_gpu
@pytest.mark.parametrize("scale", [-0.05, 0.0])
def test_a_scale_that_is_not_positive_runs_on_triton_and_forcing_cute_raises(monkeypatch, scale):
    """The CuTe and Gluon kernels take row maxima of unscaled scores: a non-positive ``softmax_scale`` goes
    to the Triton kernel (same answer), and ``ATTN_FLASHMLA_PATH=cute`` with one raises, naming it."""
    import attn_flashmla as flash_mla
    from attn_flashmla import decode_fwd
    from attn_reference import mla
    from attn_reference.errors import UnsupportedFeatureError
    from attn_reference.testing.mla import assert_mla_close, assert_mla_lse_close, mla_decode_inputs

    monkeypatch.delenv("ATTN_FLASHMLA_PATH", raising=False)
    inputs = mla_decode_inputs(
        3, 2, 128, 1, 300, dtype=torch.bfloat16, device="cuda", varlen=True, causal=True, softmax_scale=scale
    )
    meta, _ = flash_mla.get_mla_metadata()
    out, lse = inputs.call(flash_mla.flash_mla_with_kvcache, meta)
    assert meta.path == "triton"
    assert not decode_fwd.uses_gluon(inputs.q, inputs.k_cache, meta.kernel_config, scale)
    ref_out, ref_lse = mla.flash_mla_with_kvcache(**inputs.kwargs())
    assert_mla_close("out", out, ref_out)
    assert_mla_lse_close("lse", lse, ref_lse)
    if importlib.util.find_spec("cutlass") is not None:
        monkeypatch.setenv("ATTN_FLASHMLA_PATH", "cute")
        with pytest.raises(UnsupportedFeatureError, match="softmax_scale must be > 0"):
            inputs.call(flash_mla.flash_mla_with_kvcache, flash_mla.get_mla_metadata()[0])
