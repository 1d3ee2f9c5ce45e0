"""A database-backed task queue for Django: one engine, three front doors.

This package stands alone: it depends on Django only and imports nothing from the site around it.
"""
