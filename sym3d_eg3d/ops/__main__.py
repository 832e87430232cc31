"""``python -m sym3d_eg3d.ops``: build (or load from the cache) the EG3D kernels now.

Options: ``--arch 8.6`` (GPU architectures; default ``TORCH_CUDA_ARCH_LIST`` or the visible
devices), ``--variant host`` (CPU-only test build), ``--cache-dir DIR``, and op names.
"""

from __future__ import annotations

import sys

from sym3d_eg3d.ops._build import main

if __name__ == "__main__":
    sys.exit(main())
