"""Orchestration: the command implementations (`stages`) and `slidepredict run` (`run`).

Both take their settings from :func:`slidepredict.config.commands.resolve`, so a stage run by
`slidepredict run` and the same command run by hand with ``--config`` do the same thing.
"""
