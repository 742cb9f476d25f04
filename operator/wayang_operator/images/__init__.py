"""Container images without a container engine: OCI image layouts written by plain Python."""
