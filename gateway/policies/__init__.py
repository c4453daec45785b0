"""Policies around each request: who is calling, rate limits, budgets, pricing and the response cache."""
