"""Streaming: what runs stream, recorded by their workers and read back by any API process."""
