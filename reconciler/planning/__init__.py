"""Planning: a pure function of (desired state, observed facts, now). No I/O here."""
