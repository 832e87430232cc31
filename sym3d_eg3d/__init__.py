"""EG3D for sym3d: a faithful port of the EG3D generator, safe checkpoint loading and CUDA kernels."""
