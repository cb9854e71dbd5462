"""The NATS queue-group consumers that call upstream providers (``python -m workers``)."""
