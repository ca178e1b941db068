"""The chapters of ``espmail local demo``, one per pipeline; each returns rows for the closing summary."""
