"""Generate `crds/` and `schemas/` from the API models (`make manifests`)."""
