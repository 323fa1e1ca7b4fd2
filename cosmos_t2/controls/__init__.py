"""Control videos: one registry entry per modality, its compute module, and the masks."""
