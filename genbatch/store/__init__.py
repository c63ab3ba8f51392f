"""What lies in an output folder and how it gets there: atomic, contained writes (``safe_write``), the
ledger and its checks, one run per folder (``output_lock``), image formats, ``verify`` and ``merge``.

The lowest package: imports only the shared modules (genbatch.errors, echo, bulk, home).
"""
