"""Benchmarks: one step, the VAE, the FLOP floor, the diffusers comparison."""
