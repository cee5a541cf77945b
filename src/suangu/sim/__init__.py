"""Simulation: scenarios, order streams, a simulated clock and the market replayed over it."""
