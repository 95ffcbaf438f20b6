"""Workloads podnet runs in pods: ``whoami``, the HTTP server of the demo,
the tests and the benchmarks (see :mod:`podnet.workload.whoami`)."""
