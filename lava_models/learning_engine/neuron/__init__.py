"""The :class:`STLLRLearningLIF` Process (``process.py``) and its models (``models.py``).

Only these two modules live here: Lava's model discovery imports and executes every
module of a Process's directory each time it compiles one (docs/lava.md §7, pitfall 4).
"""
