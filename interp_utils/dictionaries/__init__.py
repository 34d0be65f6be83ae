"""Dictionaries: sparse autoencoders, per-layer and cross-layer transcoders, their metrics and dashboards (lessons 04,
05)."""
