"""Prometheus metrics, the online evaluation (River) and drift detection.
"""
