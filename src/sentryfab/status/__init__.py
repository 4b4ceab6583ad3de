"""`fab status`: one generated check script per host, pure parsers, thresholds, findings, statsd.

Data flows one way: script.py builds each host's one command (pure), the procedure runs it
once per host, parsers.py turns its output into facts (pure), checks.py and cluster.py turn
facts into metrics and problems (pure), statsd.py ships the metrics.
"""
