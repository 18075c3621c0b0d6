"""Fan-out benchmark of Pulse's live subscriptions against a bare ceiling and stock Channels."""
