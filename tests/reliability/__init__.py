"""Reliability cases: faults and attacks provoked for real, with the invariants checked after each."""
