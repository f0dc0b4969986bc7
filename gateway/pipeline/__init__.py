"""One attempt against an upstream, joined end to end: deadlines, the exchange, and the stream's stages.

clock.py     the request's deadlines and observed moments
exchange.py  send with deadlines; error statuses; a whole completion read, cut and encoded
chunks.py    a stream's bytes read, decoded, translated, limited and encoded for the client
answers.py   the same stages, the chunks kept as values: for a council's calls, which the gateway reads
"""
