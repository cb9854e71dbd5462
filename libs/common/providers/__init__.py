"""The provider-adapter interface; the adapters themselves live in ``workers/providers/``."""
