"""Monitoring: drift of a model's inputs and outputs against what it learned from."""
