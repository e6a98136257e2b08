"""The test suite; tests/<package>/ mirrors the package it tests."""
