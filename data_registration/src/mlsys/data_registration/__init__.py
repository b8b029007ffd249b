"""Registers beverage master data and daily sales; generates labelled synthetic history."""
