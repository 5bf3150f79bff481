"""Cocoon: the Confidential Compute Open Network, in Python."""

__version__ = "0.1.0"
