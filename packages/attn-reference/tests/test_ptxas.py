"""The ptxas helper the kernel packages' CPU tiers use: it must catch spills and serialised wgmma."""

import re

import pytest

from attn_reference.testing import ptxas

# A kernel that must hold 79 loaded values at once in 24 registers (the .maxnreg directive): volatile loads
# and stores keep their order, so every load comes before the first store and ptxas has to spill.
SPILLING = (
    """
.version 8.8
.target sm_90a
.address_size 64
.visible .entry squeeze(.param .u64 buf) .maxnreg 24 {
    .reg .f32 %f<160>;
    .reg .u64 %rd<2>;
    ld.param.u64 %rd1, [buf];
"""
    + "".join(f"    ld.volatile.global.f32 %f{i}, [%rd1+{4 * i}];\n" for i in range(1, 80))
    + "".join(f"    add.f32 %f{80 + i}, %f{i}, %f{80 - i};\n" for i in range(1, 80))
    + "".join(f"    st.volatile.global.f32 [%rd1+{4 * (i + 100)}], %f{80 + i};\n" for i in range(1, 80))
    + """
    ret;
}
"""
)

CLEAN = """
.version 8.8
.target sm_90a
.address_size 64
.visible .entry tiny(.param .u64 out) {
    .reg .u64 %rd<2>;
    .reg .f32 %f<2>;
    ld.param.u64 %rd1, [out];
    mov.f32 %f1, 0f3F800000;
    st.global.f32 [%rd1], %f1;
    ret;
}
"""

needs_ptxas = pytest.mark.skipif(ptxas.find_ptxas() is None, reason="no CUDA 13 ptxas (PATH or torch's bin/)")


@needs_ptxas
def test_a_clean_kernel_passes(tmp_path):
    ptxas.assert_no_spills_or_serialised_wgmma(CLEAN, tmp_path)


@needs_ptxas
def test_a_spilling_kernel_is_caught(tmp_path):
    with pytest.raises(AssertionError, match="spills"):
        ptxas.assert_no_spills_or_serialised_wgmma(SPILLING, tmp_path)


@needs_ptxas
def test_a_spill_budget_accepts_what_it_names_and_no_more(tmp_path):
    report = ptxas.assemble(SPILLING, tmp_path)
    worst = max(
        int(n)
        for pair in re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
        for n in pair
    )
    assert worst > 0
    ptxas.assert_no_spills_or_serialised_wgmma(SPILLING, tmp_path, max_spill_bytes=worst)
    with pytest.raises(AssertionError, match=f"at most {worst - 1} allowed"):
        ptxas.assert_no_spills_or_serialised_wgmma(SPILLING, tmp_path, max_spill_bytes=worst - 1)


@needs_ptxas
def test_bad_ptx_raises_with_the_log(tmp_path):
    with pytest.raises(RuntimeError, match="ptxas failed"):
        ptxas.assemble(".version 8.8\n.target sm_90a\nnonsense\n", tmp_path)


def test_every_serialised_wgmma_is_caught_unless_allowed(monkeypatch, tmp_path):
    """The report's wording, not a real ptxas: any 'instructions are serialized' line fails, whatever its
    code, unless the caller allows that code."""
    usage = "ptxas info    : Used 168 registers, 0 bytes spill stores, 0 bytes spill loads\n"
    lines = {
        code: f"ptxas info    : ({code}) Potential Performance Loss: wgmma.mma_async instructions are serialized due to {why}\n"
        for code, why in (("C7512", "insufficient register resources"), ("C7510", "a function call"))
    }
    # C7519 does not say "serialized": ptxas fences the in-flight wgmma whose registers are touched
    lines["C7519"] = (
        "ptxas info    : (C7519) warpgroup.arrive is injected in around line 1710 by compiler to allow use of "
        "registers in GMMA in function 'kernel'\n"
    )
    for code, line in lines.items():
        monkeypatch.setattr(ptxas, "assemble", lambda ptx, workdir, arch, line=line: usage + line)
        with pytest.raises(AssertionError, match="serialised a wgmma"):
            ptxas.assert_no_spills_or_serialised_wgmma("ptx", tmp_path)
        ptxas.assert_no_spills_or_serialised_wgmma("ptx", tmp_path, allow=(code,))
