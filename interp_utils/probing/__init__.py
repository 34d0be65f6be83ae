"""Probing: linear probes and steering (lesson 07)."""
