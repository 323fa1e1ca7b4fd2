import time

__version__ = "0.1.0"
# When this process first imported cosmos_t2: splits a job's time before its first stage into the
# interpreter's start (process creation to here) and imports (here to the job's start); see
# cosmos_t2.job.startup.
IMPORTED_UNIX = time.time()
