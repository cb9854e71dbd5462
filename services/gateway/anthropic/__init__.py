"""Anthropic's Messages API as an ingress: an Anthropic-shaped request is translated into an OpenAI
chat-completions body (which every worker adapter speaks), and the OpenAI-format answer back into an
Anthropic ``message`` or its event stream. So the Anthropic SDK works against any provider."""
