"""Names a package gives on first use: a subpackage's ``__init__`` lists what its modules define, so that
``from interp_utils.dictionaries import SAE`` works without importing every module of the subpackage up front (and
without import cycles between subpackages)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_names(
    package: str, names: dict[str, str], modules: dict[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each of ``names`` (name -> the module of the package that
    defines it) is imported from that module on first use and kept; so is each of ``modules`` (short name -> a
    module of the package, which the short name stands for)."""
    modules = modules or {}

    def __getattr__(name: str) -> Any:
        if name in modules:
            value = importlib.import_module(f"{package}.{modules[name]}")
        elif name in names:
            value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        else:
            also = f", and its modules are {sorted(modules)}" if modules else ""
            raise AttributeError(f"module {package!r} has no attribute {name!r}; it gives {sorted(names)}{also}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names) | set(modules))

    return __getattr__, __dir__
