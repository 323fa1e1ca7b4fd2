"""Several GPUs for one job: the parallel context, sequence-parallel attention, torchrun launch."""
