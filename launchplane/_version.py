"""The installed launchplane version; modules read it here, not from the package face."""

__version__ = "0.1.0"
