"""``python -m genbatch``: the ``genbatch`` command."""

from genbatch.cli.app import main

main()
