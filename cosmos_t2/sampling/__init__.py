"""Samplers: the flow-matching UniPC loop (35 steps, CFG) and the distilled 4-step sampler."""
