"""Layer 2, one job's run on a worker: start script, steps, live windows, end script."""
