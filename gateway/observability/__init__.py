"""What the gateway tells its operators: Prometheus metrics, log lines, and one record per request.

metrics.py  every metric, by name, with labels only from the routing table
logs.py     JSON and text log formats, and the buffered access log
record.py   what one request did, filled in as it goes, then counted and logged once
"""
