"""Where and how a run executes: the device, several processes (torchrun), signals."""
