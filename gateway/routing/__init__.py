"""Routing: deployments and routes, strategies, retries, circuit breakers, upstream pacing and the attempt loop."""
