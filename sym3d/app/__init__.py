"""The application layer: photo -> result folder, exports, metrics and the photo commands.

* :mod:`sym3d.app.pipeline` — one photo into one finished result folder (:func:`process_photo`).
* :mod:`sym3d.app.export` — the outputs of a result folder, a table of small exporters.
* :mod:`sym3d.app.metrics` — PSNR, SSIM, LPIPS, depth errors, confidence intervals.
* :mod:`sym3d.app.outdir`, :mod:`sym3d.app.result_options` — output-folder safety; what a stored
  result may be rendered with.
* :mod:`sym3d.app.commands` — ``sym3d invert``, ``render``, ``edit``; :mod:`sym3d.app.batch` —
  ``sym3d batch`` (local processes or Ray).

The layer uses generators, pose estimators and losses only through :mod:`sym3d.protocols` and
the registry (by name); it never imports a plugin package. Importing it imports nothing heavy.
"""
