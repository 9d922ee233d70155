"""Orchestration: one experiment end to end (experiment), cross-validation (crossval, oof, ensemble), search
(tuning, tune_cluster, sweep), the whole study (runner), external evaluation and the shift check. These are
the only modules that see the whole config."""
