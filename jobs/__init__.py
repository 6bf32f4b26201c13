"""Batch jobs of the Rasa server side: ``retention`` (delete what is older than
WAYPOINT_RETENTION_DAYS)."""
