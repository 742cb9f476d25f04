"""Scanning artifacts with trivy: the subprocess, its report turned into the seed's ScanReport."""
