"""Operator procedures as library functions returning plain data.

``engine-admin`` (engine.cli) only parses arguments and renders what these return;
the admin endpoint serves the same functions on a live database.
"""
