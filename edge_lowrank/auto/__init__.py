"""`auto`: a scheme and ranks per layer, chosen on measured cost per op shape (see `edge_lowrank.auto.plan`).

candidates.py (numpy): the options of a layer and their kernel errors. select.py (numpy): the budgeted choice.
costs.py: the cached cost table (micro models converted by `converters`, timed by `device_bench.costs`).
plan.py: ties them to `edge_lowrank.rewrite.compress` (`CompressionPolicy(scheme="auto", ...)`).
"""
