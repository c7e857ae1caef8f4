# FlashMLA's split-KV tile scheduler (plain Python): a skewed batch cut into parts of equal cost.
from attn_flashmla.scheduler import schedule_decode

seqlens = [300, 20000, 700, 0]  # one long sequence among short ones, and an empty one
sched = schedule_decode(seqlens, num_parts=8, block_n=64)
for i, work in enumerate(sched.chunks()):
    print(f"part {i}:", [(seq, f"tiles {t0}-{t1}", f"split {s}") for seq, t0, t1, s in work])
print("splits per sequence:", [int(b - a) for a, b in zip(sched.split_offsets[:-1], sched.split_offsets[1:])])
assert sched.total_splits >= len(seqlens)
