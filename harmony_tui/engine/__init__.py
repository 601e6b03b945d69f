"""The engine: model loading, one generation thread, Harmony and chat-template formats.

It knows nothing of Textual or FastAPI. Heavy modules (mlx, mlx_lm) are imported lazily inside
the functions that need them.
"""
