"""Jobs for many callers: a batch in one process, and the long-lived server that runs their GPU work one job at a time."""
