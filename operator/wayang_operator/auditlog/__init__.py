"""The tamper-evident audit log: BLAKE3 Merkle tree, signed checkpoints, stores."""
