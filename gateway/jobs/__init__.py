"""Scheduled operations: the scheduler that runs the operations manual's jobs (backups,
reports delivered on schedule, the security review, data retention) at their cron times on
exactly one replica, and the jobs' own parts."""
