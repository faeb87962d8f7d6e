"""Signed webhooks: job events POSTed to a URL the job names (Standard Webhooks)."""
