"""`fab status`: one generated check script per host, pure facts, thresholds, findings, statsd.

Data flows one way: script.py builds each host's one command from its facts (pure), the
procedure runs it once per host, script.split cuts the answer into one section per fact and
each fact's own parser (facts/, beside its command) turns it into data; checks.py and
cluster.py turn facts into metrics and problems (pure), every metric keyed by metrics.Key;
thresholds.py holds their levels; statsd.py ships the metrics.
pipeline.py is what they know of Sentry's event pipeline: which Redis roles hold event
payloads (PAYLOAD_ROLES) and when a queued task's event was accepted. ingestion.py is what they
know of Sentry 9.1.2's ingestion routes: it classifies what facts/ingestion.py counted on the
host (ingestion errors by cause, payloads found missing).
"""
