"""Monitoring dashboard: plots (plots.py), JSON data (data.py), web server (server.py)."""
