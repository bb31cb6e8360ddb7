"""Reliable delivery machinery shared by the reverse-ETL Singer targets.

Nothing here knows about a particular destination: the targets bring the
mapping and the API calls, this package brings change detection, retries,
pacing, rejects, dry-run plans and the run report.
"""
