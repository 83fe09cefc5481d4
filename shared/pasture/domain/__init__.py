"""Entities and value objects. Imports nothing from the rest of Pasture."""
