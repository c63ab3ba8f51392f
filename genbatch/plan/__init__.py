"""The plan of a run: manifest rows into jobs (one per image), ``--vary`` axes, file names, what a
model's family refuses, the host's shard and ``--limit``; the jobs in the order they run.

May import: genbatch.jobs, genbatch.manifest, genbatch.pipelines, genbatch.store and the shared modules;
never genbatch.backends, genbatch.engine or genbatch.runner.
"""
