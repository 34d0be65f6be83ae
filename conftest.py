"""pytest runs in fast, strict mode unless told otherwise.

INTERP_FAST=0 pytest runs full-size notebooks; strict mode (INTERP_STRICT=1) turns a reproduction row that
disagrees with the paper into a failing notebook.
"""

import os

os.environ.setdefault("INTERP_FAST", "1")
os.environ.setdefault("INTERP_STRICT", "1")
