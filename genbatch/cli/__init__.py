"""The ``genbatch`` command: parses options, calls the library, prints results and one-line errors.

Owns nothing but the command line. May import any genbatch package; nothing imports it.
"""
