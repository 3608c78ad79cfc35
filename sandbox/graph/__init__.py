"""Microsoft Graph stand-in: routing, handlers per feature, and the HTTP front door."""
