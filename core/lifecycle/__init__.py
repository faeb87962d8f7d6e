"""What keeps the service whole over time: deletion, the artifact sweeper, the reconciler."""
