"""Model records and their inspection outcome."""
