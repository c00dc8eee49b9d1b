"""The embedded lab: tiny models and synthetic three-group tasks that a CPU handles in minutes."""
