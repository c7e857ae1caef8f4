# CuTe layouts are functions from coordinates to offsets: the DSL's own algebra, run on the CPU.
from attn_cutlass.layouts import demo_algebra, demo_basics

basics = demo_basics()
print("row-major", basics["row_major"]["layout"], "maps (1, 2) to", basics["row_major"]["at_1_2"])
print("nested   ", basics["nested"]["layout"], "maps (3, 5) to", basics["nested"]["at_3_5"])
algebra = demo_algebra()
for name in ("composition", "complement", "zipped_divide", "blocked_product"):
    print(f"{name:16s}", algebra[name]["layout"], algebra[name]["offsets"][:8], "...")
assert basics["row_major"]["at_1_2"] == 8 * 1 + 2
