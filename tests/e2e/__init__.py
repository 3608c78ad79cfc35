"""End-to-end tests: the demo stack driven through the Microsoft 365 Agents Playground."""
