"""Executing plans: local and SSH executors, send/recv streams, zfs error mapping, apply."""
