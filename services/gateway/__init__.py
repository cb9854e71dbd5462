"""The HTTP edge: OpenAI-format API, auth, SSE, OpenAI-shaped errors."""
