"""cahl: Capability-Aligned Hierarchical Learning for tool-using LLM agents."""

__version__ = "0.1.0"
