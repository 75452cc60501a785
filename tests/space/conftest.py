"""Fixtures for the space tests: single-threaded torch and a recipe for brevitas conversion."""

from buildkit import package_fixtures

one_thread, recipe = package_fixtures()
