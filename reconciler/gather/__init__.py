"""Gathering the observed state: one `zfs list` per host, a strict fast parser."""
