"""Executing plans: apply, send/recv transfers, progress, zfs error mapping, the lock."""
