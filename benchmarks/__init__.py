"""redraft's benchmarks: scripts, labelled data, results and plots.

`python -m benchmarks` (or `redraft bench`) runs the performance benchmarks (`perf_*.py`) and
writes BENCHMARKS.md's performance section; the other modules each measure one feature
(`python -m benchmarks.safety`, `python -m benchmarks.retrieval`, ...).
"""
