"""Local stand-ins for the production servers, started as real processes.

Used by ``scripts/run`` (the whole stack on the default ports), the test suite (free ports in a
temporary directory) and the chaos and benchmark scripts.
"""
