"""Fixtures for the training-device and data-loading tests: single-threaded torch."""

from buildkit import package_fixtures

one_thread, recipe = package_fixtures()
