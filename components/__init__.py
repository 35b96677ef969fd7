"""Reusable rendering pieces; pages call services and hand results to these."""
