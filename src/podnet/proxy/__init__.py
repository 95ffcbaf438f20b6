"""The L7 reverse proxy. :mod:`podnet.proxy.http1` is its sans-I/O HTTP/1.1 framing core."""

__all__: list[str] = []
