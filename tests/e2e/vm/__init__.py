"""Fixture capture from the real-OpenZFS guest (capture.py); the guest itself is reconciler.testbed."""
