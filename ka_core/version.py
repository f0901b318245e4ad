"""ka-kemi's version: the one place it is written.

pyproject.toml reads it for the wheel, debian/changelog must carry the same number (a unit test
compares them), ``keepalive.version`` and ``/metrics``' ``build_info`` report it at runtime.
"""

__version__ = "0.7.0"
