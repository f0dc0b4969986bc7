"""The ledger's commands, run beside the server on the same database:

    gateway keys create --id team-a --models 'gpt-4o*' --rpm 600 --budget 50/30d   (prints the secret)
    gateway keys list
    gateway keys revoke team-a
    gateway usage --since 7d --by key
    gateway db migrate

Each finds its config as the server does (--config, else $GATEWAY_CONFIG, else ./gateway.yaml,
else the built-in default) and works on the ledger it names, while the gateway runs or not.

main.py   the parser, the config, the ledger opened and migrated, then one command
keys.py   keys create, list, revoke
usage.py  the usage report (table.py: a text table)
"""

SUBCOMMANDS = ("keys", "usage", "db")  # the first word of a command line that runs one of these (main.py)
