"""The main job, as the numbered steps of a run (``run``), its options, the summary it returns and
what SIGINT and SIGTERM do.

May import every library package below it; genbatch.cli, bench, export and evaluate import it.
"""
