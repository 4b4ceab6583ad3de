"""The lab's Sentry-shaped workload: sentry_lab.py is copied into the lab image as it is."""
