"""Telling callers about their generations after the HTTP call: Ideogram's signed webhooks and
the resellers' task callbacks, from a durable outbox in the database."""
