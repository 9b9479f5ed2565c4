"""zrepl-reconcile: a declarative reconciler for ZFS snapshots, retention and replication."""

__version__ = "0.1.0"
