"""The overrides of a run small enough for a test."""

# conf/debug/tiny.yaml: synthetic data, a few batches, one epoch on the CPU.
TINY = ["debug=tiny"]
# The same trainer settings, for a test on another data set.
TINY_TRAINER = [
    "device=cpu",
    "trainer.epochs=1",
    "trainer.batch_size=32",
    "trainer.log_every_n_steps=2",
    "trainer.num_threads=1",
]
