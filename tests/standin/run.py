"""The stand-in ``zfs`` command line: imports zfs.py as a module and runs it.

A script run as ``python zfs.py`` is compiled from source on every start (about 18 ms
for zfs.py, most of a call's own time); an imported module is read from its cached
bytecode. The tests make thousands of stand-in calls."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zfs  # after the path it is found by

sys.exit(zfs.main())
