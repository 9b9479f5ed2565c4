"""The QEMU guest harness: build-image.sh (image), guest.py (boot/ssh/stop), capture.py (fixtures)."""
