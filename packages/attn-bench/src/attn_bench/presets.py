"""Named selections of the suites' GPU grids, and splitting a selection into parts that fit one call each.

``deliverable`` is issue 3's figure set (bf16): attention forward and backward at batch x seqlen = 16384,
heads x head_dim = 2048, seqlen 1k-16k, head dims 64/128/256, causal and not; decoding against an 8k KV
cache (b 64, 1 query token, 32 query / 8 KV heads, d 128); FlashMLA's dense decoding shapes (b 128, h_kv 1,
h_q 16/128, s_q 1/2, s_k 8k/32k); the basics; and peak memory against seqlen (for the memory figure).
It runs every implementation's regular variants, never the ablation ones, so its rows stay those of the
committed tables.

``ablations`` is the optimisation guide's (docs/guides/optimisation.md) before/after pairs in one run: each
backend op that has ablation variants (``attn_bench.backend``), its default beside them, at the sizes the
guide quotes, and nothing else (no peers, no other backend):

* attention forward at seqlen 16k (b 1), hd128 causal and not, hd64, hd256 causal: attn-cuda's forward
  tilings and causal launch order, attn-cutlass's causal tile schedule, attn-triton's pointer loads
  against TMA, causal launch order, scale folding and pipeline stages;
* attention backward (``bwd`` and ``fwd+bwd``) at 16k, hd 64/128/256, and hd128 causal: attn-triton's dQ
  by atomics against its own kernel (``deterministic``) and its tiles loaded by TMA (``tma_loads``,
  ``bwd_tma=True``) against the default's pointer loads, attn-cuda's backward tilings, attn-cutlass's dQ
  by atomics and by either reduce-add against the default's, its LSE prefetch and serial schedule;
* decoding against a KV cache of 8k and 32k tokens (b 64, 32/8 heads, d 128): attn-triton's split-KV
  against one split;
* FlashMLA decoding, b 128, s_q 1, h_q 16/128, s_k 8k/32k: Triton's TMA K tiles against the gather, the
  CuTe kernel's one warpgroup and split S against its default;
* matmul 8192^3 (bf16): attn-cuda's shared-memory layouts, block orders and tiles, attn-cutlass's
  persistent GEMM against one CTA per tile; vector add of 2^28 fp32: attn-cuda's 16-byte loads against
  4-byte ones and against an uncoalesced access pattern.

20 cases (packages/attn-bench/README.md counts the rows and estimates the time; the first run, of 16 cases
and 112 rows, took 182 s on an H200): ``attn-bench run --preset ablations -o docs/benchmarks/h200-ablations.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from attn_bench.suites import Case


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    description: str
    suites: tuple[str, ...]
    keep: Callable[[Case], bool] = lambda case: True
    mode: str = "gpu"  # the grids it names
    #: run only the backend ops with ablation variants, each variant (see :func:`attn_bench.engine.plan`)
    ablations: bool = False

    def keeps(self, case: Case) -> bool:
        """Whether the preset keeps a case (a suite the preset does not name, given with -s: every case)."""
        return case.suite not in self.suites or self.keep(case)


def _deliverable(case: Case) -> bool:
    if case.suite == "decode-kvcache":
        return case.shape["seqlen_k"] == 8192
    return True


def _ablations(case: Case) -> bool:
    sh = case.shape
    if case.suite == "attention-fwd":  # hd128 causal and not, hd64 not causal, hd256 causal (schedules)
        return sh["seqlen_q"] == 16384 and (
            sh["head_dim"] == 128
            or (sh["head_dim"] == 64 and not sh["causal"])
            or (sh["head_dim"] == 256 and sh["causal"])
        )
    if case.suite == "attention-bwd":  # every head dim; causal at hd128 (where dQ keeps its atomics)
        return sh["seqlen_q"] == 16384 and (sh["head_dim"] == 128 or not sh["causal"])
    if case.suite == "decode-kvcache":  # split-KV: the committed cache and the longest one
        return sh["seqlen_k"] in (8192, 32768)
    if case.suite == "mla-decode":
        return sh["seqlen_q"] == 1
    if case.suite == "basics":  # the largest matmul, and the largest vector add (coalescing, vector loads)
        return (sh["kernel"] == "matmul" and sh["m"] == 8192) or (
            sh["kernel"] == "vector_add" and sh["n"] == 1 << 28
        )
    return False


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "deliverable",
            "issue 3's figures: attention fwd/bwd grid, decode (cache 8k), FlashMLA decode, basics, memory",
            ("attention-fwd", "attention-bwd", "decode-kvcache", "mla-decode", "basics", "memory"),
            _deliverable,
        ),
        Preset(
            "ablations",
            "the optimisation guide's before/after pairs: each ablation variant beside its default",
            ("attention-fwd", "attention-bwd", "decode-kvcache", "mla-decode", "basics"),
            _ablations,
            ablations=True,
        ),
    )
}


def parse_split(text: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)``: the i-th (1-based) of N parts."""
    try:
        part, parts = (int(x) for x in text.split("/"))
    except ValueError as exc:
        raise ValueError(f"--split takes i/N (the i-th of N parts, 1-based), got {text!r}") from exc
    if not 1 <= part <= parts:
        raise ValueError(f"--split {text}: need 1 <= i <= N")
    return part, parts


def group_key(case: Case) -> tuple[str, str]:
    """Cases that must run together: a backward's ``bwd`` and ``fwd+bwd`` rows share inputs and check."""
    return case.suite, case.name.removesuffix(" fwd+bwd").removesuffix(" bwd")


def cost(case: Case) -> float:
    """A rough weight (not seconds): a fixed part per case (inputs, reference check, compiles) plus work."""
    return 1.0 + case.flops / 2e12 + case.bytes / 2e10


def split_cases(cases: list[Case], parts: int) -> list[list[Case]]:
    """Deterministic, balanced by :func:`cost`: groups (see :func:`group_key`) go whole to one part,
    heaviest first to the lightest part; each part keeps the cases' original order."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(cases):
        groups.setdefault(group_key(c), []).append(i)
    weights = {k: sum(cost(cases[i]) for i in idx) for k, idx in groups.items()}
    load = [0.0] * parts
    owner: dict[int, int] = {}
    for k in sorted(groups, key=lambda k: (-weights[k], min(groups[k]))):
        p = min(range(parts), key=lambda j: (load[j], j))
        load[p] += weights[k]
        for i in groups[k]:
            owner[i] = p
    return [[c for i, c in enumerate(cases) if owner[i] == p] for p in range(parts)]


def cases(name: str, quick: bool = False) -> list[Case]:
    """Every case of a preset, suite by suite in the preset's order."""
    from attn_bench.suites import SUITES

    preset = PRESETS[name]
    return [c for s in preset.suites for c in SUITES[s].cases(preset.mode, quick) if preset.keeps(c)]
