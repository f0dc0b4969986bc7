"""Quorum routes: one request to a council of other routes, one answer.

council.py  who is asked what and when (the strategies, hedging, stopping calls), over the
            caller's member calls (api.members); the verdict and its report
answers.py  one call's answer built from its deltas; usage summed   (pure)
combine.py  which answers are the same, and which group wins a vote  (pure)
prompts.py  the judge's, debaters' and tie-break messages, from templates  (pure)
events.py   what a council tells whoever watches it (/api/v1/debates)  (pure)
"""
