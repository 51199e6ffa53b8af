"""kdbench: a benchmark suite for knowledge distillation of language models across domains.

Plugin authors need only :data:`hookimpl` and :mod:`kdbench.api`; see the README.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"
NAME = "kdbench"
hookimpl = pluggy.HookimplMarker(NAME)

__all__ = ["NAME", "__version__", "hookimpl"]
