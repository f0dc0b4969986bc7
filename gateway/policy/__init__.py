"""Who may do what, as pure rules: budgets (and their periods) and prices.

budgets.py  a budget's window (Nd, month), the scopes a request is charged to, the admission rule
prices.py   what a request cost: a route's own `price:`, else the price library's
"""
