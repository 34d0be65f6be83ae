"""pytest runs in fast mode unless told otherwise (INTERP_FAST=0 pytest runs full-size notebooks)."""

import os

os.environ.setdefault("INTERP_FAST", "1")
