"""Testing tools every backend shares: seeded input generators (:mod:`.inputs`, :mod:`.mla`), the tolerance
rules (:mod:`.tolerance`, and FlashMLA's in :mod:`.mla`), the conformance suites (:mod:`.conformance`,
:mod:`.mla`), the pytest plugin with the tier markers (:mod:`.pytest_plugin`) and a ptxas check of kernels'
PTX (:mod:`.ptxas`).

Importing this package imports nothing heavy; the conformance modules need pytest (the ``testing`` extra).
"""
