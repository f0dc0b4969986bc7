"""Which upstream serves a request: the routing table, target health, and the attempts across them.

table.py     a model name to its route: exact names first, then globs in file order
health.py    consecutive failures, cooldowns and half-open probes per target
dispatch.py  weighted picks, retries with backoff, and fallbacks, until one attempt succeeds
quorum/      a quorum route's council: its members asked, their answers combined
"""
