"""What a run leaves on disk: checkpoints, its manifest, the folder's lock, atomic
writes, the names of run and job folders, and the commands it prints."""
