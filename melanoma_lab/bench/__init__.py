"""Benchmarks (make bench, make bench-study): throughput.py times the input pipeline and training, study.py
the whole notebook procedure against our study."""
