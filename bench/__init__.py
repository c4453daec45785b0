"""Load benchmark of the gateway against an nginx upstream serving canned OpenAI answers.

``python -m bench`` measures nginx direct (baseline) and the gateway in front of
it with wrk; ``python -m bench.clients`` compares HTTP client libraries.
"""
