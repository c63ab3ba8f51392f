"""``genbatch bench``: genbatch against the plain loop a user would write, each measurement a process
of its own, and the plot.

May import: genbatch.runner and everything below it.
"""
