"""Moved to ``reconciler.testbed.guest`` (the demo command ships it); kept as an alias."""

from reconciler.testbed.guest import *  # noqa: F403
from reconciler.testbed.guest import Guest, boot, ensure_image, free_port, recreate_pool  # noqa: F401
