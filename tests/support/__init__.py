"""Test harness: local identity services, a fake Bot Connector, Teams activities, fixtures."""
