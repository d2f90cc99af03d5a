"""LangGraph assistants: the model, the AssistantStore protocol, its memory and PostgreSQL stores,
and the catalog that adds one system assistant per served graph."""
