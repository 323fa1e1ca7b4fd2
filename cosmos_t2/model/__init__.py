"""The network (DiT + control branch), the Wan2.1 VAE, the text and image encoders, and checkpoint loading."""
