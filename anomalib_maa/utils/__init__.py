"""Utilities: the sample-data generator."""
