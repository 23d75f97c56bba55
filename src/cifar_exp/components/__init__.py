"""The parts a Trainer holds, each declared once: optimizers and schedules, weight
averaging, stop rules and pruning, test-time augmentation, guards against bad steps."""
