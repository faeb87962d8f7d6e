"""Webhook state (secrets, deliveries), dispatch of job events, and the SSRF guard."""
