"""Hostile-input fixtures: a misbehaving origin server and the table of cases."""
