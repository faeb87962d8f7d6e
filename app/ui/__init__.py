"""The web dashboard served at ``/ui``: static ES modules that use the public ``/v1`` API."""
