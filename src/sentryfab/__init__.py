"""sentryfab: SSH ops command suite for a self-hosted Sentry cluster."""

__version__ = "0.1.0"
