"""Loads the native module with the allocator options it wants.

The module's own (Rust) allocations go to mimalloc, which reads its options
from the environment once, as the module loads. Its arenas would be
advised as transparent huge pages: each 2 MiB region touched then becomes
resident in whole, about 6 MB more per process (a worker's resident size
at start measured 21 MB without, 27 MB with) for allocations that are
small. A value the user set for ``MIMALLOC_ALLOW_THP`` is kept; the one
set here is removed once the module has loaded, so the app's own child
processes do not inherit it.
"""

from __future__ import annotations

import os

_THP = "MIMALLOC_ALLOW_THP"

_ours = _THP not in os.environ
if _ours:
    os.environ[_THP] = "0"
try:
    from . import _native  # noqa: F401
finally:
    if _ours:
        del os.environ[_THP]
