"""Graders: functions from a model's text to a grade. They know nothing about engines or benchmarks' data."""
