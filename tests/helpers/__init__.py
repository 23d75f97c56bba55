"""What the tests share: `from helpers.cli import run_cli`, `from helpers.paths import REPO`.

cli         run an entrypoint as a user does (a fresh process) or inside the test's process
paths       where the repository, its configs and the real CIFAR-10 copy lie
overrides   the overrides of a run small enough for a test
outputs     reading what runs and sweeps write (metrics.json, manifest.json, summary.csv)
events      reading TensorBoard's event files back, as TensorBoard does
compare     two runs equal in everything the seed determines; a folder left untouched
plugins     skipping a test whose Hydra plugin is not installed
"""
