"""Tracing: the local replacement model, attribution, and attribution graphs with pruning and scores (lesson 05)."""
