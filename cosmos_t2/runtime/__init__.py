"""How the network runs on this machine: built, placed in memory, accelerated, kept between jobs, on what software."""
