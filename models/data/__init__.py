"""Data sets in the event contract, and their loading into per-user sequences."""
