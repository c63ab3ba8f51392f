"""What an output folder tells a person or a program: run.json and the report tables
(``summaries``), ``report.html`` (``html``, ``pages``, ``scan``, ``throughput``), thumbnails, contact
sheets and comparison grids.

May import: genbatch.plan, genbatch.manifest, genbatch.pipelines, genbatch.store and the shared modules;
never the engine, the runner or a backend.
"""
