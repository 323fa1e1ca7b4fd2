"""Jobs for many callers: a batch in one process, and the long-lived server that runs one job at a time."""
