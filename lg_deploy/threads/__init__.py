"""LangGraph threads: the model, the ThreadStore protocol and its memory and PostgreSQL stores."""
