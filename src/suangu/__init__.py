"""Suangu (算谷): an open exchange for green compute."""

__version__ = "0.1.0"
