"""Circuits: head scores, direct logit attribution, activation and path patching, the IOI circuit's rules, the edge
graph with edge patching, EAP and EAP-IG, ACDC and reference circuits (lessons 02, 03, 06)."""
