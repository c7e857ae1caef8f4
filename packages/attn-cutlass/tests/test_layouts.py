"""The layout algebra of attn_cutlass.layouts, evaluated by the CuTe DSL on the CPU."""

import pytest

from attn_cutlass import layouts


@pytest.fixture(scope="module")
def basics():
    return layouts.demo_basics()


@pytest.fixture(scope="module")
def algebra():
    return layouts.demo_algebra()


def test_row_and_column_major(basics):
    assert basics["row_major"]["layout"] == "(4,8):(8,1)"
    assert basics["row_major"]["at_1_2"] == 10  # 8 * 1 + 2
    # Offsets in colexicographic order (left-most coordinate fastest).
    assert basics["row_major"]["offsets"][:8] == [0, 8, 16, 24, 1, 9, 17, 25]
    assert basics["col_major"]["layout"] == "(4,8):(1,4)"
    assert basics["col_major"]["offsets"] == list(range(32))


def test_hierarchical_layout(basics):
    assert basics["nested"]["layout"] == "((2,2),(4,2)):((4,16),(1,8))"
    # Row 3 = (1, 1) -> 4 + 16, column 5 = (1, 1) -> 1 + 8.
    assert basics["nested"]["at_3_5"] == 29
    assert sorted(basics["nested"]["offsets"]) == list(range(32))


def test_composition_transposes(algebra):
    # Reading a row-major 4 x 8 through (8, 4):(4, 1) visits memory in order: the transpose view.
    assert algebra["composition"]["layout"] == "(8,4):(1,8)"
    assert algebra["composition"]["offsets"] == list(range(32))


def test_complement(algebra):
    assert algebra["complement"]["layout"] == "(2,2):(1,8)"
    assert algebra["complement"]["offsets"] == [0, 1, 8, 9]


def test_divides(algebra):
    assert algebra["logical_divide"]["layout"] == "((2,4),(4,2)):((1,2),(8,32))"
    assert algebra["zipped_divide"]["layout"] == "((2,4),(4,2)):((1,8),(2,32))"
    assert algebra["zipped_divide"]["offsets"][:8] == [0, 1, 8, 9, 16, 17, 24, 25]  # the first 2 x 4 tile
    assert algebra["zipped_divide"]["tile_1_first"] == 2  # tile (1, 0) starts at row 2
    assert sorted(algebra["zipped_divide"]["offsets"]) == list(range(64))


def test_products(algebra):
    assert algebra["blocked_product"]["layout"] == "((2,2),(2,3)):((2,12),(1,4))"
    assert sorted(algebra["blocked_product"]["offsets"]) == list(range(24))
    assert algebra["logical_product"]["layout"] == "(2,3):(1,2)"


def test_swizzle_spreads_a_column_over_banks():
    res = layouts.demo_swizzle()
    assert res["layout"] == "S<3,3,3> o 0 o (8,64):(64,1)"
    offsets = res["offsets"]
    # Column 0 of row r sits in 16-byte chunk r of its row: 8 rows, 8 different chunks (no bank conflict).
    assert [row[0] for row in offsets] == [r * 64 + 8 * r for r in range(8)]
    assert [(row[0] % 64) // 8 for row in offsets] == list(range(8))
    assert offsets[1][:16] == [*range(72, 80), *range(64, 72)]  # row 1: chunks 0 and 1 swapped
    assert sorted(o for row in offsets for o in row) == list(range(512))  # a permutation
