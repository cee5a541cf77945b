"""The provider agent: runs leases on a provider's cluster (local processes or Slurm),
meters GPU-seconds and energy (NVML or nominal board power), and reports meter readings to
the exchange, which settles them on the ledger. See :mod:`suangu.agent.runner`."""
