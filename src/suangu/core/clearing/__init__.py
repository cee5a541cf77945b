"""Market clearing: welfare-maximising allocations and locational marginal prices."""

from suangu.core.clearing.engine import ClearingOptions, clear

__all__ = ["ClearingOptions", "clear"]
