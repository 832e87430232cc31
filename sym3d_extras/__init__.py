"""Optional sym3d components: synthetic heads, face alignment, LPIPS, metrics, exports, batch runs."""
