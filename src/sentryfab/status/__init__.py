"""`fab status`: one generated check script per host, pure parsers, thresholds, findings, statsd.

Data flows one way: script.py builds each host's one command (pure), the procedure runs it
once per host, parsers.py turns its output into facts (pure), checks.py and cluster.py turn
facts into metrics and problems (pure), statsd.py ships the metrics.
pipeline.py is what they know of Sentry's event pipeline: which Redis roles hold event
payloads (PAYLOAD_ROLES) and when a queued task's event was accepted. ingestion.py reduces
the last minute of nginx's and the workers' logs on the host (awk) and classifies what it
counted: ingestion errors by cause, payloads found missing.
"""
