"""A config in, a Trainer out (build), the Trainer itself (engine), resuming, the
numeric precision, and trained models read back for inference."""
