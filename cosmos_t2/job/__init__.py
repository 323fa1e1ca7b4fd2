"""One job in the order it runs: inputs -> conditioning -> diffuse per chunk -> decode -> outputs and its record."""
