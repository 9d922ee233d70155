"""Where runs live and what they record: the store (URI, locks), the run (RunTracker), provenance, the
PostgreSQL-backed server, and the repair of runs whose process died."""
