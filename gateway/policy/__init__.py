"""Who may do what, as pure rules: budgets (and their periods) and prices; the rate limits of
keys and routes, over a store protocol.

budgets.py  a budget's window (Nd, month), the scopes a request is charged to, the admission rule
prices.py   what a request cost: a route's own `price:`, else the price library's
rules.py    which rate limits a request is held to; the 429 and the x-ratelimit-* headers
limiter.py  admission against the rate limits before dispatch, settling when the request ends
"""

from .limiter import RateLimiter, Ticket

__all__ = ["RateLimiter", "Ticket"]
