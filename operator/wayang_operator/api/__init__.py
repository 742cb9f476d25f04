"""Typed API models: the single source of the CRDs in crds/ and the JSON Schemas in schemas/."""
