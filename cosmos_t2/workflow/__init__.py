"""The Snakemake sweep's library side: the planner's content keys and the manifest."""
