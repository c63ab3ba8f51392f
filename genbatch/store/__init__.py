"""What lies in an output folder: the ledger and its checks (which hold each record to the field
table's types and ranges), one run per folder (``output_lock``), the image formats and the names
genbatch keeps for itself, the resume scan, ``verify`` and ``merge``. Every write goes through
genbatch.safe_write.

May import: genbatch.manifest (the field table), genbatch.pipelines and the shared modules.
"""
