"""Benchmarks reported as ratios measured in one run (`attnxai bench ...`), never as timed tests."""
