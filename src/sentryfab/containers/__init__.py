"""Docker containers per role: specs (pure) and docker command builders (pure)."""
