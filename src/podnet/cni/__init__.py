"""``podnet-cni``: podnet as a CNI plugin for podman, containerd and CRI-O.

:mod:`podnet.cni.spec` is the protocol, sans I/O (environment, stdin
configuration, results and errors in every version podnet speaks); the
executable and the work it delegates to the agent live beside it.
"""
