"""Plots (matplotlib) and the HTML report."""
