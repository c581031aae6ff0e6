"""The agent: claims leased jobs from the queue server and launches them through the plugins.

``loop`` (claim loops, heartbeat, shutdown), ``pipeline`` (one job's stages), ``outbox`` (its
calls to the server), ``secrets``, ``rundir``, ``records``, ``gitcode``, ``logging``. Imports
``launchplane.core`` only; never the server or the CLI.
"""
