"""Helpers shared by test packages (servers and fixtures that are not tests themselves)."""
