"""Helpers for the web-app tests (tests/test_app*.py): tiny pipelines, a server on a free
loopback port, and a headless Chromium that the test set-up installs when it is missing."""
