"""The streaming side of interest-updater: settings, broker, workers and the `iu` command."""
