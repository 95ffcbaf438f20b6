"""podnet: container networking and service load balancing for Linux."""

__all__ = ["__version__"]

__version__ = "0.1.0"
