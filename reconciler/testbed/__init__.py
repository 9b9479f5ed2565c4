"""A real-OpenZFS test bed: a cached Debian 12 + OpenZFS guest under QEMU, driven over SSH.

Used by the realzfs test suite, the benchmarks and ``zrepl-reconcile demo``. Standard
library only; never imported by the planner or the apply path.
"""
