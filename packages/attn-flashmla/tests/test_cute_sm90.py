"""The CuTe DSL Hopper kernel compiles for sm_90a without a GPU, to TMA copies and wgmma instructions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from attn_flashmla.decode_fwd_sm90 import cute_supports

COMPILE = textwrap.dedent(
    """
    import sys, torch
    from attn_flashmla.decode_fwd_sm90 import compile_for_sm90
    compile_for_sm90(torch.bfloat16, causal=sys.argv[1] == "causal")
    print("compiled")
    """
)


@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
def test_kernel_compiles_for_sm90a_to_tma_and_wgmma(tmp_path: Path, causal: bool):
    pytest.importorskip(
        "cutlass", reason="the CuTe DSL (nvidia-cutlass-dsl, the sm90 extra) is not installed"
    )
    # A fresh interpreter: the DSL reads its environment (target arch, what to keep, where) at import.
    env = {
        **os.environ,
        "CUTE_DSL_ARCH": "sm_90a",
        "CUTE_DSL_KEEP": "ptx",
        "CUTE_DSL_DUMP_DIR": str(tmp_path),
        "CUTE_DSL_NO_CACHE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", COMPILE, "causal" if causal else "plain"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0 and "compiled" in result.stdout, result.stderr[-4000:]
    ptx_files = list(tmp_path.rglob("*.ptx"))
    assert ptx_files, f"no PTX dumped under {tmp_path}"
    ptx = ptx_files[0].read_text()
    assert ".target sm_90a" in ptx
    # S = Q K^T: 36 k-steps of m64n64k16 (d = 576); O += P V: 4 k-steps of m64n256k16, A from registers.
    assert ptx.count("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16") == 36
    assert ptx.count("wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16") == 4
    # TMA: Q (2-d tensor) and the paged K blocks (3-d: token, channel, KV head), completing on mbarriers.
    assert "cp.async.bulk.tensor.2d.shared::cta.global" in ptx
    assert "cp.async.bulk.tensor.3d.shared::cta.global" in ptx
    assert "mbarrier.try_wait" in ptx


def test_cute_supports_states_its_limits():
    q = torch.empty(1, 1, 16, 576, dtype=torch.bfloat16)
    assert cute_supports(q, 64) is None
    assert "page_block_size" in cute_supports(q, 16)
    assert "head dim" in cute_supports(q[..., :512], 64)
    assert "dtype" in cute_supports(q.float(), 64)
