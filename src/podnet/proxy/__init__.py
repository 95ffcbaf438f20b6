"""The L7 reverse proxy. :mod:`podnet.proxy.http1` is its sans-I/O HTTP/1.1 framing core.

The hot pure modules may run compiled (mypyc): see :mod:`podnet.proxy.native`.
"""

from podnet.proxy.native import activate as _activate

__all__: list[str] = []

_activate(__path__)
