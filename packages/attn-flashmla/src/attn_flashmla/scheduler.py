"""The tile scheduler of split-KV decoding: which SM part attends to which KV tiles of which sequence.

Why split at all: decoding has few query rows (``s_q * h_q / h_kv``, at most a few hundred) and a long KV
cache. One CTA per (sequence, head) leaves most SMs idle for small batches, and for skewed batches (one
32k-token sequence among 1k-token ones) the long sequence alone decides the kernel's time. FlashMLA's
answer, reproduced here in plain Python:

1. Cut every sequence into tiles of ``block_n`` tokens (a zero-length sequence still counts one, empty,
   tile: somebody must write its ``out = 0, lse = +inf``).
2. Give each sequence a cost of ``tiles + fixed_overhead``. The overhead (FlashMLA uses 5 tiles' worth)
   models what a piece of work costs besides streaming KV: loading q, writing a partial output, and the
   combine step afterwards. It keeps the scheduler from cutting a sequence into slivers.
3. Lay the sequences end to end and cut the line into ``num_parts`` pieces of (nearly) equal cost,
   ``payload = ceil(total / num_parts) + fixed_overhead``. A part takes whole sequences while they fit, and
   when the next one does not fit it takes as many of its tiles as its remaining payload pays for; the
   rest of that sequence starts the next part (and pays the overhead again).

Each part is handed to one CTA (per query-row block and KV head), which walks its list: a contiguous run
of sequences, the first and last possibly partial. A sequence that ended up in ``n > 1`` parts has ``n``
*splits*; each split writes a partial ``(out, lse)`` to a scratch buffer at slot
``split_offsets[seq] + split_index``, and the combine kernel merges them (see :mod:`attn_flashmla.combine`).
A sequence in one part is written to ``out`` directly.

Why the greedy line-cutting is complete (no tile is left over after ``num_parts`` parts): a part stops
early only when its remaining payload is at most ``fixed_overhead``, so it consumes at least
``payload - fixed_overhead = ceil(total / num_parts)``; a part that splits a sequence consumes its whole
payload, which pays for the extra overhead the split's remainder costs later. Summed over all parts this
covers ``total`` plus every extra overhead. :func:`schedule_decode` asserts it anyway.
"""

from __future__ import annotations

import dataclasses

import torch

#: Columns of :attr:`DecodeSchedule.parts`.
BEGIN_REQ, BEGIN_TILE, END_REQ, END_TILE, BEGIN_SPLIT = range(5)
PART_FIELDS = 5

#: FlashMLA's fixed per-split overhead, in tiles of 64 tokens.
FIXED_OVERHEAD_TILES = 5


@dataclasses.dataclass(frozen=True)
class DecodeSchedule:
    """A schedule for one batch of ``cache_seqlens`` (see the module docstring).

    ``parts`` (num_parts, 5) int32: ``begin_req, begin_tile, end_req, end_tile, begin_split``. The part
    attends to tiles ``[begin_tile, ...)`` of sequence ``begin_req``, every tile of the sequences in between,
    and tiles ``[..., end_tile)`` of ``end_req`` (inclusive); ``begin_split`` is the split index of its first
    sequence (later ones start at split 0). An empty part has ``begin_req > end_req``.
    ``split_offsets`` (b + 1,) int32: sequence ``i`` has splits ``split_offsets[i] .. split_offsets[i+1]``.
    """

    block_n: int
    parts: torch.Tensor
    split_offsets: torch.Tensor
    seqlens: tuple[int, ...]

    @property
    def num_parts(self) -> int:
        return self.parts.shape[0]

    @property
    def total_splits(self) -> int:
        return int(self.split_offsets[-1])

    def to(self, device) -> DecodeSchedule:
        return dataclasses.replace(
            self, parts=self.parts.to(device), split_offsets=self.split_offsets.to(device)
        )

    def chunks(self) -> list[list[tuple[int, int, int, int]]]:
        """Per part, its work as ``(seq, first_tile, end_tile, split_index)``: what the kernel iterates."""
        out = []
        for begin_req, begin_tile, end_req, end_tile, begin_split in self.parts.cpu().tolist():
            work = []
            for req in range(begin_req, end_req + 1):
                t0 = begin_tile if req == begin_req else 0
                t1 = end_tile if req == end_req else num_tiles(self.seqlens[req], self.block_n)
                work.append((req, t0, t1, begin_split if req == begin_req else 0))
            out.append(work)
        return out


def num_tiles(seqlen: int, block_n: int) -> int:
    """Tiles of ``block_n`` tokens a sequence takes; an empty sequence takes one (empty) tile."""
    return max(1, -(-seqlen // block_n))


def default_num_parts(
    num_sms: int, h_kv: int, q_rows: int, block_m: int, ctas_per_sm: int = 1, dv_split: int = 1
) -> int:
    """FlashMLA's choice: enough parts that parts x row blocks x KV heads (x output-channel splits, when
    programs share the 512 output channels) fills the GPU once."""
    row_blocks = -(-q_rows // block_m)
    return max(num_sms * ctas_per_sm // h_kv // row_blocks // dv_split, 1)


def schedule_decode(
    seqlens: list[int] | torch.Tensor,
    num_parts: int,
    block_n: int = 64,
    fixed_overhead: int = FIXED_OVERHEAD_TILES,
) -> DecodeSchedule:
    """Split every sequence's KV tiles across ``num_parts`` parts of balanced cost (module docstring)."""
    if isinstance(seqlens, torch.Tensor):
        seqlens = seqlens.cpu().tolist()
    seqlens = tuple(int(s) for s in seqlens)
    if num_parts < 1 or block_n < 1 or fixed_overhead < 0:
        raise ValueError(f"num_parts and block_n must be positive, got {num_parts}, {block_n}")
    if any(s < 0 for s in seqlens):
        raise ValueError(f"sequence lengths must be non-negative, got {seqlens}")
    # --8<-- [start:schedule]
    b = len(seqlens)
    tiles = [num_tiles(s, block_n) for s in seqlens]
    total = sum(tiles) + fixed_overhead * b
    payload = -(-total // num_parts) + fixed_overhead

    parts = []
    splits_of = [0] * b  # splits counted per sequence
    req, tile, split = 0, 0, 0  # where the next part starts: sequence, tile, split index
    for _ in range(num_parts):
        begin = (req, tile, split)
        budget = payload
        while req < b:
            left = tiles[req] - tile
            if budget >= left + fixed_overhead:  # the rest of this sequence fits: take it whole
                budget -= left + fixed_overhead
                splits_of[req] = split + 1
                req, tile, split = req + 1, 0, 0
            else:  # take what the budget pays for (if anything beyond the overhead), split the rest
                if budget > fixed_overhead:
                    tile += budget - fixed_overhead
                    split += 1
                break
        if tile > 0:  # ends inside sequence `req`, at tile `tile`
            end_req, end_tile = req, tile
        else:  # ends after the last tile of sequence `req - 1`
            end_req = req - 1
            end_tile = tiles[end_req] if end_req >= 0 else 0
        if begin[0] > end_req:  # nothing left for this part
            parts.append([b, 0, b - 1, 0, 0])
        else:
            parts.append([begin[0], begin[1], end_req, end_tile, begin[2]])
    # --8<-- [end:schedule]
    if req != b:
        raise AssertionError(f"scheduler left sequences {req}.. unassigned ({seqlens}, {num_parts} parts)")
    offsets = [0]
    for n in splits_of:
        offsets.append(offsets[-1] + n)
    return DecodeSchedule(
        block_n=block_n,
        parts=torch.tensor(parts, dtype=torch.int32).view(num_parts, PART_FIELDS),
        split_offsets=torch.tensor(offsets, dtype=torch.int32),
        seqlens=seqlens,
    )
