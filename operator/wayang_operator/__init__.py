"""Wayang Plugin Operator: only verified, scanned, approved plugin artifacts run, sandboxed."""

__version__ = "0.1.0"
