"""A host as the deploy sees it: what it holds (`state`, `reads`), how to ask it (`facts`), how
to talk to it (`remote`) and the shell text sent to it (`commands`).

`state`, `reads` and `commands` are pure (no pyinfra, no I/O) and tested by running or parsing
recorded output; `facts` and `remote` are the only modules here that touch pyinfra.
"""
