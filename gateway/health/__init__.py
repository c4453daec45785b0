"""Connection tests and scheduled health checks: probes.py (the four tests), runner.py
(sending a probe around traffic control), monitor.py (the scheduled checks and degraded marks)."""
