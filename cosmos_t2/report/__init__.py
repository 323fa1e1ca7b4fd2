"""The HTML report of a sweep: run discovery, tables, fidelity metrics."""
