"""Toy models: the models of Toy Models of Superposition (lesson 01)."""
