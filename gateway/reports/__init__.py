"""Daily, weekly and monthly reports (docs/reports.md): request statistics
counted from the request records, stored per process and day in the state
backend, and rendered as Markdown, HTML with inline SVG charts, or JSON."""
