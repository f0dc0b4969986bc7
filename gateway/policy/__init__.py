"""Who may do what, as pure rules over a store protocol: the rate limits of keys and routes.

rules.py     which limits a request is held to; the 429 and the x-ratelimit-* headers
limiter.py   admission before dispatch, settling when the request ends
"""

from .limiter import RateLimiter, Ticket

__all__ = ["RateLimiter", "Ticket"]
