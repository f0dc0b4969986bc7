"""Where shared state lives: the rate limits' meters, in the process, in memory the workers
share, or in Redis.

base.py         the Store protocol, meters and the sliding window's arithmetic
memory.py       meters in a table of integers (MeterTable)
local.py        that table in this process, or in a file every worker maps (LocalStore)
redis_store.py  meters in Redis, one Lua script a step (RedisStore; imports redis only when used)
"""

from .base import Meter, Reading, Store, StoreError, Verdict
from .local import LocalStore, SharedTable

__all__ = ["LocalStore", "Meter", "Reading", "SharedTable", "Store", "StoreError", "Verdict"]
