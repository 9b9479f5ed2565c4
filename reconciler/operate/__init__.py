"""Operating it for months: the record of every apply (the state file), Prometheus metrics,
the ``on_failure`` command and systemd's notify protocol."""
