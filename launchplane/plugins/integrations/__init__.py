"""Integration plugins: a queue's ``integrations: {<name>: {options}}`` turns one on.

Each module implements ``launchplane_integration_options`` (its name and the
model of its options, checked when the queue is created) and
``launchplane_prepare_job``, which acts only on jobs whose queue names it.
"""
