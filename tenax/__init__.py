"""tenax: a goal-loop orchestrator for long-horizon coding-agent work."""
__version__ = "0.1.0"
