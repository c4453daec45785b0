"""Egress translators (sans-IO): canonical requests to each provider's wire format, its answers and streams back."""
