"""Command groups of the ``suangu`` CLI, one module each (registered in :mod:`suangu.cli`)."""
