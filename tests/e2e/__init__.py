"""End-to-end tests against real OpenZFS in a QEMU guest (marker realzfs)."""
